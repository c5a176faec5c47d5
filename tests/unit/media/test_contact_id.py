"""Ademco Contact ID: checksum vectors, message build/decode, tone detection, and the panel and
receiving-centre machines run against each other in memory (clean, attenuated, noisy, through
G.711), with bad checksums, silent receivers and receivers that never acknowledge."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.media.contact_id import (
    EVENT_NAMES,
    FRAME,
    ContactIdError,
    ContactIdMessage,
    ContactIdReceiver,
    ContactIdSender,
    SendResult,
    ToneMeter,
    checksum_digit,
    decode,
    event_name,
    tone,
)
from pypbx.media.dtmf import dtmf_tone, dtmf_tones
from pypbx.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

Pcm = npt.NDArray[np.int16]
TICK = 0.02
START = 1000.0
SILENCE = np.zeros(FRAME, dtype=np.int16)

FIRE = ContactIdMessage.build(account="1234", event_code="110", partition="1", zone="10")


# --- checksum and message -----------------------------------------------------------------


_VALUES = {str(n): n for n in range(1, 10)} | {"0": 10, "B": 11, "C": 12, "D": 13, "E": 14}
_VALUES["F"] = 15


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("123418113101015", "8"),  # perimeter burglary, zone 15: the classic example
        ("123418111001010", "B"),  # fire: sum 64, 15 - 4 = 11, sent as '*'
        ("000000000000000", "F"),  # 15 zeros are worth 150, a multiple of 15 already
        ("111111111111111", "F"),  # 15
        ("111111111111112", "E"),  # 16 -> 14, sent as 'B'
        ("111111111111113", "D"),  # 17 -> 13, sent as 'A'
        ("111111111111114", "C"),  # 18 -> 12, sent as '#'
        ("111111111111115", "B"),  # 19 -> 11, sent as '*'
        ("111111111111116", "0"),  # 20 -> 10, the digit 0
        ("111111111111117", "9"),  # 21 -> 9
    ],
)
def test_checksum_vectors(body: str, check: str) -> None:
    assert checksum_digit(body) == check
    assert sum(_VALUES[digit] for digit in body + check) % 15 == 0


def test_checksum_rejects_other_characters() -> None:
    with pytest.raises(ContactIdError) as info:
        checksum_digit("12341811100101A")
    assert str(info.value) == "'A' is not a Contact ID digit"


def test_build_pads_fields_and_maps_digits_to_keys() -> None:
    assert ContactIdMessage("1234", "1", "110", "01", "010") == FIRE
    assert FIRE.digits == "123418111001010B"
    assert FIRE.dtmf == "123418111001010*"
    assert (FIRE.qualifier_name, FIRE.event_name) == ("NewEvent", "Fire")
    restore = ContactIdMessage.build(
        account="0000", event_code="0", partition="0", zone="0", qualifier="newrestore"
    )
    assert restore.digits == "0000183000000000"[:15] + checksum_digit("000018300000000")
    assert restore.qualifier_name == "NewRestore"
    status = ContactIdMessage.build(
        account=" 9876", event_code="602", partition="99", zone="999", qualifier="StatusReport"
    )
    assert status.body == "987618660299999"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account": "123"}, "AccountNumber: must be exactly 4 digits"),
        ({"account": "12345"}, "AccountNumber: must be exactly 4 digits"),
        ({"account": "12B4"}, "AccountNumber: must be decimal digits"),
        ({"event_code": "1100"}, "EventCode: must be at most 3 digits"),
        ({"event_code": ""}, "EventCode: must be decimal digits"),
        ({"partition": "100"}, "PartitionNumber: must be at most 2 digits"),
        ({"zone": "-1"}, "ZoneNumber: must be decimal digits"),
        ({"zone": "\u0663"}, "ZoneNumber: must be decimal digits"),  # Arabic-Indic three
        ({"qualifier": "Alarm"}, "EventQualifier: must be NewEvent, NewRestore or StatusReport"),
    ],
)
def test_build_names_the_bad_parameter(kwargs: dict[str, str], message: str) -> None:
    fields = {"account": "1234", "event_code": "110", "partition": "1", "zone": "10"} | kwargs
    with pytest.raises(ContactIdError) as info:
        ContactIdMessage.build(**fields)
    assert str(info.value) == message
    assert info.value.field == message.split(":")[0]


def test_decode_vectors() -> None:
    assert decode("1234181131010158") == ContactIdMessage("1234", "1", "131", "01", "015")
    # B-F in the fields travel as * # A B C; message type 98 is accepted too
    message = decode("*#AB981602BC0005")
    assert message.account == "BCDE"
    assert message.message_type == "98"
    assert message.event_code == "602"
    assert message.partition == "EF"
    assert message.dtmf == "*#AB981602BC0005"
    assert decode(FIRE.dtmf.lower()) == FIRE


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("123418113101015", "a message has 16 digits, got 15"),
        ("12341811310101588", "a message has 16 digits, got 17"),
        ("123418113101015D", "DTMF key 'D' is not a Contact ID digit"),
        (
            "123417113101015" + checksum_digit("123417113101015"),
            "message type 17 is not Contact ID (18 or 98)",
        ),
        ("1234181131010159", "bad checksum in 1234181131010159"),
    ],
)
def test_decode_errors(keys: str, message: str) -> None:
    with pytest.raises(ContactIdError) as info:
        decode(keys)
    assert str(info.value) == message
    assert info.value.field is None


@settings(max_examples=200)
@given(
    account=st.text(alphabet="0123456789", min_size=4, max_size=4),
    code=st.text(alphabet="0123456789", min_size=1, max_size=3),
    partition=st.text(alphabet="0123456789", min_size=1, max_size=2),
    zone=st.text(alphabet="0123456789", min_size=1, max_size=3),
    qualifier=st.sampled_from(["NewEvent", "NewRestore", "StatusReport"]),
)
def test_round_trip(account: str, code: str, partition: str, zone: str, qualifier: str) -> None:
    message = ContactIdMessage.build(
        account=account, event_code=code, partition=partition, zone=zone, qualifier=qualifier
    )
    assert len(message.dtmf) == 16
    assert decode(message.dtmf) == message
    assert message.qualifier_name == qualifier


@settings(max_examples=200)
@given(position=st.integers(0, 15), key=st.sampled_from("0123456789*#ABC"))
def test_any_single_wrong_digit_is_caught(position: int, key: str) -> None:
    keys = FIRE.dtmf
    if keys[position] == key:
        return
    corrupted = keys[:position] + key + keys[position + 1 :]
    with pytest.raises(ContactIdError):
        decode(corrupted)


def test_event_names() -> None:
    assert event_name("110") == "Fire"
    assert event_name("120") == "Panic"
    assert event_name("130") == "Burglary"
    assert event_name("401") == "Open/Close by user"
    assert event_name("999") == "Unknown"
    assert event_name("1") == "Unknown"  # 001
    assert all(len(code) == 3 and code.isdigit() for code in EVENT_NAMES)


# --- tone detection -----------------------------------------------------------------------


def test_tone_meter_labels_blocks() -> None:
    meter = ToneMeter()
    audio = np.concatenate(
        (
            tone(1400, 0.1),
            np.zeros(800, dtype=np.int16),
            tone(2300, 0.1),
            dtmf_tone("2", 0.1),  # 1336 + 697 Hz: near 1400 but not it
            tone(1400, 0.1, level_dbfs=-40),
            tone(1400, 0.1, level_dbfs=-50),  # below the detection level
            tone(1500, 0.1),
        )
    )
    labels = []
    for start in range(0, len(audio), 123):  # chunks of any size
        labels += meter.feed(audio[start : start + 123])
    assert labels == [1400.0] * 5 + [0.0] * 5 + [2300.0] * 5 + [0.0] * 5 + [1400.0] * 5 + [0.0] * 10


# --- the two machines against each other ---------------------------------------------------


Channel = Callable[[Pcm], Pcm]


def clean(pcm: Pcm) -> Pcm:
    return pcm


def ulaw(pcm: Pcm) -> Pcm:
    return ulaw_decode(ulaw_encode(pcm))


def impaired(gain: float, noise: float, *, law: str = "ulaw", seed: int = 7) -> Channel:
    rng = np.random.default_rng(seed)

    def channel(pcm: Pcm) -> Pcm:
        signal = pcm.astype(np.float64) * gain + rng.normal(0.0, noise, len(pcm))
        out = np.clip(np.round(signal), -32768, 32767).astype(np.int16)
        if law == "alaw":
            return alaw_decode(alaw_encode(out))
        return ulaw_decode(ulaw_encode(out))

    return channel


@dataclass
class Link:
    """Two machines joined by two one-way channels with `delay` frames of latency."""

    sender: ContactIdSender | None
    receiver: ContactIdReceiver | None
    forward: Channel = clean  # sender -> receiver
    backward: Channel = clean  # receiver -> sender
    delay: int = 3
    now: float = START
    to_receiver: deque[Pcm] = field(default_factory=deque)
    to_sender: deque[Pcm] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.to_receiver.extend([SILENCE] * self.delay)
        self.to_sender.extend([SILENCE] * self.delay)

    def step(self) -> None:
        self.now += TICK
        out = self.sender.next_frame(self.now) if self.sender else SILENCE
        back = self.receiver.next_frame(self.now) if self.receiver else SILENCE
        self.to_receiver.append(self.forward(out))
        self.to_sender.append(self.backward(back))
        heard_by_receiver, heard_by_sender = self.to_receiver.popleft(), self.to_sender.popleft()
        if self.receiver:
            self.receiver.receive(heard_by_receiver, self.now)
        if self.sender:
            self.sender.receive(heard_by_sender, self.now)

    def run(self, seconds: float) -> float:
        """Step until both machines are done (or `seconds` pass); returns the time taken."""
        for _ in range(round(seconds / TICK)):
            if (self.sender is None or self.sender.done) and (
                self.receiver is None or self.receiver.done
            ):
                break
            self.step()
        return self.now - START


MESSAGES = [
    FIRE,
    ContactIdMessage.build(account="0000", event_code="0", partition="0", zone="0"),
    ContactIdMessage.build(
        account="9999", event_code="401", partition="12", zone="3", qualifier="NewRestore"
    ),
    ContactIdMessage.build(
        account="1111", event_code="602", partition="1", zone="111", qualifier="StatusReport"
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.digits)
@pytest.mark.parametrize(
    "channel",
    [
        clean,
        ulaw,
        impaired(0.1, 0.0),  # -20 dB
        impaired(0.5, 400.0),  # -6 dB and noise at about -38 dBFS
        impaired(1.0, 1500.0, law="alaw"),  # loud noise, about -27 dBFS
    ],
    ids=["clean", "ulaw", "minus20dB", "noise", "loud-noise-alaw"],
)
def test_sender_and_receiver_agree(message: ContactIdMessage, channel: Channel) -> None:
    sender = ContactIdSender(message, START)
    receiver = ContactIdReceiver(START)
    link = Link(sender, receiver, channel, channel)
    elapsed = link.run(20.0)
    assert sender.result == SendResult(True, "", 1)
    assert receiver.message == message
    assert (receiver.bad_messages, receiver.handshakes_sent, receiver.reason) == (0, 1, "")
    # settle 1 s, handshake 0.3 s, pause 0.25 s, 16 digits of 110 ms, kissoff 0.8 s
    assert 4.0 <= elapsed <= 4.8


def test_timing_of_what_the_sender_sends() -> None:
    """After the handshake's end: 250 ms of silence, then 16 tones of 55 ms, 55 ms apart."""
    sender = ContactIdSender(FIRE, START)
    handshake = np.concatenate((tone(1400, 0.1), np.zeros(800, np.int16), tone(2300, 0.1)))
    now = START
    for start in range(0, len(handshake), FRAME):
        now += TICK
        sender.receive(handshake[start : start + FRAME], now)
        assert not sender.next_frame(now).any()
    now += TICK
    sender.receive(SILENCE, now)  # the block that shows the 2300 Hz tone has ended
    sent = []
    while sender.state != "wait kissoff":
        now += TICK
        sent.append(sender.next_frame(now))
    audio = np.concatenate(sent)
    begin = np.flatnonzero(audio)[0] - 1  # a sine starts at 0
    assert 0.24 <= begin / 8000 <= 0.27
    expected = dtmf_tones(FIRE.dtmf, tone_ms=55, pause_ms=55)
    assert np.array_equal(audio[begin : begin + len(expected)], expected)
    assert not audio[begin + len(expected) :].any()
    assert sender.attempts == 1


def test_receiver_takes_out_of_band_digits() -> None:
    """RFC 4733 presses reach the receiver as keys, with nothing in the audio."""
    receiver = ContactIdReceiver(START)
    now = START
    while receiver.state != "listen":
        now += TICK
        receiver.next_frame(now)
    for key in FIRE.dtmf:
        now += 0.1
        receiver.receive_digit(key, now)
        receiver.receive(SILENCE, now)
    assert receiver.state == "kissoff"
    kissoff = []
    while not receiver.done:
        now += TICK
        kissoff.append(receiver.next_frame(now))
    meter = ToneMeter()
    assert meter.feed(np.concatenate(kissoff)) == [1400.0] * 40  # 800 ms
    assert receiver.message == FIRE


class CorruptFirstAttempt:
    """A channel that replaces the sender's first message with one whose 8th digit is
    wrong, at the same timing: a line hit the checksum catches."""

    def __init__(self, sender: ContactIdSender) -> None:
        keys = FIRE.dtmf
        wrong = "5" if keys[7] != "5" else "6"
        bad = dtmf_tones(keys[:7] + wrong + keys[8:], tone_ms=55, pause_ms=55)
        self.bad = np.concatenate((bad, np.zeros(FRAME * 4, dtype=np.int16)))
        self.sender = sender
        self.index = 0

    def __call__(self, pcm: Pcm) -> Pcm:
        if self.sender.attempts != 1 or (not pcm.any() and self.index == 0):
            return pcm
        if self.index * FRAME >= len(self.bad):
            return pcm
        frame = self.bad[self.index * FRAME : (self.index + 1) * FRAME]
        self.index += 1
        return frame


def test_bad_checksum_is_asked_again_and_sent_again() -> None:
    sender = ContactIdSender(FIRE, START)
    receiver = ContactIdReceiver(START)
    link = Link(sender, receiver, CorruptFirstAttempt(sender), ulaw)
    elapsed = link.run(20.0)
    assert receiver.bad_messages == 1
    assert receiver.handshakes_sent == 2  # the second one asked for the message again
    assert receiver.message == FIRE
    assert sender.result == SendResult(True, "", 2)
    # the repeat went out on the new handshake (0.25 s after the bad message, 0.3 s long),
    # not 1.25 s after the first message as a lost kissoff would have had it
    assert 6.7 <= elapsed <= 7.1


def test_receiver_drops_a_message_that_stops_short_and_asks_again() -> None:
    receiver = ContactIdReceiver(START)
    now = START
    while receiver.state != "listen":
        now += TICK
        receiver.next_frame(now)
    for key in FIRE.dtmf[:10]:
        now += 0.1
        receiver.receive_digit(key, now)
    assert receiver.keys == FIRE.dtmf[:10]
    for _ in range(40):  # 0.8 s of nothing
        now += TICK
        receiver.receive(SILENCE, now)
        receiver.next_frame(now)
    assert (receiver.bad_messages, receiver.handshakes_sent, receiver.keys) == (1, 2, "")
    assert receiver.state == "handshake"


def test_receiver_drops_a_key_contact_id_does_not_use() -> None:
    receiver = ContactIdReceiver(START)
    now = START
    while receiver.state != "listen":
        now += TICK
        receiver.next_frame(now)
    receiver.receive_digit("1", now)
    receiver.receive_digit("D", now)
    assert (receiver.bad_messages, receiver.keys, receiver.state) == (1, "", "settle")


def test_no_handshake_fails_at_the_timeout() -> None:
    sender = ContactIdSender(FIRE, START, handshake_timeout=5.0)
    link = Link(sender, None)
    link.run(4.9)
    assert not sender.done
    elapsed = link.run(1.0)
    assert sender.result == SendResult(False, "no handshake", 0)
    assert 5.0 <= elapsed <= 5.1
    assert not sender.next_frame(link.now).any()


def test_a_long_1400_hz_tone_before_the_message_is_not_a_kissoff() -> None:
    sender = ContactIdSender(FIRE, START)
    receiver = ContactIdReceiver(START, settle=2.0)
    link = Link(sender, receiver)
    audio = tone(1400, 1.0)
    for start in range(0, len(audio), FRAME):  # the line carries a 1 s tone first
        link.now += TICK
        sender.receive(audio[start : start + FRAME], link.now)
    link.run(20.0)
    assert sender.result == SendResult(True, "", 1)
    assert receiver.message == FIRE


class HandshakeOnly:
    """A receiving centre that sends one handshake and then never acknowledges."""

    def __init__(self, now: float) -> None:
        self.audio = np.concatenate(
            (np.zeros(8000, np.int16), tone(1400, 0.1), np.zeros(800, np.int16), tone(2300, 0.1))
        )
        self.position = 0
        self.done = False

    def next_frame(self, now: float) -> Pcm:
        frame = self.audio[self.position : self.position + FRAME]
        self.position += FRAME
        return frame if len(frame) == FRAME else SILENCE

    def receive(self, pcm: Pcm, now: float) -> None:
        pass


def test_no_kissoff_sends_four_times_then_fails() -> None:
    sender = ContactIdSender(FIRE, START)
    link = Link(sender, HandshakeOnly(START))  # type: ignore[arg-type]
    starts = []
    while not sender.done and link.now < START + 30:
        before = sender.attempts
        link.step()
        if sender.attempts != before:
            starts.append(link.now)
    assert sender.result == SendResult(False, "no kissoff", 4)
    gaps = np.diff(starts)
    # each attempt: 16 x 110 ms + 55 ms, 1.25 s for the kissoff to start, 250 ms pause
    assert all(3.2 <= gap <= 3.45 for gap in gaps), gaps
    assert link.now - starts[-1] <= 3.45


def test_receiver_repeats_the_handshake_then_gives_up() -> None:
    receiver = ContactIdReceiver(START, listen_timeout=2.0, handshakes=3)
    link = Link(None, receiver)
    elapsed = link.run(30.0)
    assert receiver.done and receiver.message is None
    assert (receiver.reason, receiver.handshakes_sent) == ("no message", 3)
    # settle 1 s, then three rounds of handshake 0.3 s + 2 s of listening
    assert 7.9 <= elapsed <= 8.05


def test_receiver_overall_timeout() -> None:
    receiver = ContactIdReceiver(START, timeout=3.0, listen_timeout=10.0)
    link = Link(None, receiver)
    elapsed = link.run(30.0)
    assert (receiver.reason, receiver.message) == ("timeout", None)
    assert 3.0 <= elapsed <= 3.05


def test_abort() -> None:
    sender = ContactIdSender(FIRE, START)
    sender.abort("call ended")
    assert sender.result == SendResult(False, "call ended", 0)
    sender.abort("again")
    assert sender.result.reason == "call ended"
    receiver = ContactIdReceiver(START)
    receiver.abort("call ended")
    assert (receiver.done, receiver.reason, receiver.message) == (True, "call ended", None)
    # a message already acknowledged stays received when the call ends during the kissoff
    receiver = ContactIdReceiver(START, settle=0.0)
    receiver.next_frame(START)
    for key in FIRE.dtmf:
        receiver.receive_digit(key, START)
    receiver.abort("call ended")
    assert (receiver.message, receiver.reason) == (FIRE, "")
