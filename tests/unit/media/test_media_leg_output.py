"""LegOutput over a real RtpEndpoint on 127.0.0.1 (a plain UDP socket plays the phone), and
`dtmf_steps`, which turns SendDTMF keys into the per-tick steps a LegOutput sends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from pypbx.media.dtmf import DtmfError, TelephoneEvent, decode_event, encode_event
from pypbx.media.endpoint import CodecSpec, MediaManager, RtpEndpoint
from pypbx.media.g711 import alaw_encode, ulaw_encode
from pypbx.media.leg_output import EventBurst, LegOutput
from pypbx.media.player import FRAME, ClipSource, Pcm
from pypbx.media.rtp import RtpPacket
from pypbx.pbx.call_media import dtmf_steps

PCMU = CodecSpec(0, "PCMU", 101)
PCMA = CodecSpec(8, "PCMA", 96)
PCMU_NO_EVENTS = CodecSpec(0, "PCMU")
SILENCE_ULAW = ulaw_encode(np.zeros(FRAME, dtype=np.int16))


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Phone:
    """A UDP socket standing in for the phone's RTP port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    async def packets(self, wait: float = 0.1) -> list[RtpPacket]:
        """Everything that arrived, up to a quiet `wait`."""
        loop = asyncio.get_running_loop()
        got: list[RtpPacket] = []
        while True:
            try:
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 4096), wait)
            except TimeoutError:
                return got
            got.append(RtpPacket.parse(data))


@dataclass
class Rig:
    clock: Clock
    media: MediaManager
    endpoint: RtpEndpoint
    phone: Phone
    idle: list[LegOutput] = field(default_factory=list)
    done: list[str] = field(default_factory=list)

    def output(self, codec: CodecSpec = PCMU) -> LegOutput:
        return LegOutput(self.endpoint, codec, self.idle.append, clock=self.clock)

    def tick(self, output: LegOutput, times: int = 1) -> None:
        for _ in range(times):
            output.tick()
            self.clock.now += 0.02


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = Clock()
    media = MediaManager("127.0.0.1", 32100, 32199, clock=clock)
    endpoint = await media.create_endpoint()
    phone = Phone()
    endpoint.set_remote(phone.address)
    yield Rig(clock, media, endpoint, phone)
    await media.close()
    phone.sock.close()


def level(value: int, count: int = FRAME) -> Pcm:
    return np.full(count, value, dtype=np.int16)


def ramp(count: int, start: int = 0, step: int = 3) -> Pcm:
    return (np.arange(count, dtype=np.int32) * step + start).astype(np.int16)


def event(packet: RtpPacket) -> TelephoneEvent:
    return decode_event(packet.payload)


# --------------------------------------------------------------------------- prompts


async def test_prompt_frames_go_out_as_one_stream(rig: Rig) -> None:
    pcm = ramp(3 * FRAME)
    output = rig.output()
    output.play(ClipSource(pcm), lambda: rig.done.append("done"))
    assert output.busy
    rig.tick(output, 3)
    packets = await rig.phone.packets()
    assert [p.payload for p in packets] == [
        ulaw_encode(pcm[i * FRAME : (i + 1) * FRAME]) for i in range(3)
    ]
    assert {p.payload_type for p in packets} == {0}
    assert {p.ssrc for p in packets} == {rig.endpoint.output.ssrc}
    assert [p.marker for p in packets] == [True, False, False]  # the first takes the stream over
    first = packets[0]
    assert [p.sequence for p in packets] == [(first.sequence + i) & 0xFFFF for i in range(3)]
    assert [p.timestamp for p in packets] == [
        (first.timestamp + i * FRAME) & 0xFFFFFFFF for i in range(3)
    ]
    assert rig.done == [] and rig.idle == [] and not output.finished


async def test_prompt_end_calls_on_done_once_then_goes_idle(rig: Rig) -> None:
    output = rig.output()
    output.play(ClipSource(level(100, FRAME + 10)), lambda: rig.done.append("done"))
    rig.tick(output, 2)
    assert rig.done == []
    rig.tick(output)  # the source runs out: no packet, on_done, then idle
    assert rig.done == ["done"]
    assert rig.idle == [output]
    assert output.finished and not output.busy
    assert output.source is None and output.on_source_done is None
    rig.tick(output, 3)
    assert rig.done == ["done"] and rig.idle == [output]
    packets = await rig.phone.packets()
    assert len(packets) == 2
    last = np.zeros(FRAME, dtype=np.int16)
    last[:10] = 100
    assert packets[1].payload == ulaw_encode(last)  # the padded last frame


async def test_nothing_to_send_goes_idle_at_once(rig: Rig) -> None:
    output = rig.output()
    assert not output.busy
    rig.tick(output)
    assert rig.idle == [output] and output.finished
    assert await rig.phone.packets(0.05) == []


async def test_pcma_is_encoded_as_alaw(rig: Rig) -> None:
    pcm = ramp(2 * FRAME, -2000, 17)
    output = rig.output(PCMA)
    output.play(ClipSource(pcm))
    rig.tick(output, 2)
    packets = await rig.phone.packets()
    assert [(p.payload_type, p.payload) for p in packets] == [
        (8, alaw_encode(pcm[:FRAME])),
        (8, alaw_encode(pcm[FRAME:])),
    ]
    assert alaw_encode(pcm[:FRAME]) != ulaw_encode(pcm[:FRAME])


async def test_set_codec_changes_the_encoding_mid_prompt(rig: Rig) -> None:
    pcm = ramp(2 * FRAME, 50, 11)
    output = rig.output(PCMU)
    output.play(ClipSource(pcm))
    rig.tick(output)
    output.set_codec(PCMA)
    rig.tick(output)
    packets = await rig.phone.packets()
    assert [(p.payload_type, p.payload) for p in packets] == [
        (0, ulaw_encode(pcm[:FRAME])),
        (8, alaw_encode(pcm[FRAME:])),
    ]
    assert packets[1].sequence == (packets[0].sequence + 1) & 0xFFFF


async def test_a_new_play_replaces_the_prompt_without_its_on_done(rig: Rig) -> None:
    output = rig.output()
    output.play(ClipSource(level(1000, 10 * FRAME)), lambda: rig.done.append("first"))
    rig.tick(output)
    output.play(ClipSource(level(-1000, FRAME)), lambda: rig.done.append("second"))
    rig.tick(output, 2)
    packets = await rig.phone.packets()
    assert [p.payload for p in packets] == [ulaw_encode(level(1000)), ulaw_encode(level(-1000))]
    assert rig.done == ["second"]
    assert rig.idle == [output]


async def test_stop_playback_goes_idle_without_on_done(rig: Rig) -> None:
    output = rig.output()
    output.play(ClipSource(level(1000, 10 * FRAME)), lambda: rig.done.append("done"))
    rig.tick(output)
    output.stop_playback()
    assert not output.busy
    rig.tick(output)
    assert rig.done == []
    assert rig.idle == [output]
    assert len(await rig.phone.packets()) == 1


async def test_takes_over_a_stream_another_writer_was_feeding(rig: Rig) -> None:
    rig.endpoint.send_media(SILENCE_ULAW, 0, FRAME, writer="relay")
    rig.clock.now += 0.02
    output = rig.output()
    output.play(ClipSource(level(300, FRAME)))
    rig.tick(output)
    before, first = await rig.phone.packets()
    assert first.marker
    assert first.ssrc == before.ssrc
    assert first.sequence == (before.sequence + 1) & 0xFFFF
    assert first.timestamp == (before.timestamp + FRAME) & 0xFFFFFFFF


async def test_key_press_takes_over_a_stream_another_writer_was_feeding(rig: Rig) -> None:
    rig.endpoint.send_media(SILENCE_ULAW, 0, FRAME, writer="relay")
    rig.clock.now += 0.06  # 60 ms since the relay's last packet
    output = rig.output()
    output.queue_dtmf(dtmf_steps("7", 20, 20))
    rig.tick(output)
    before, *press = await rig.phone.packets()
    assert [p.payload_type for p in press] == [101] * 3
    assert press[0].marker
    assert press[0].sequence == (before.sequence + 1) & 0xFFFF
    assert {p.timestamp for p in press} == {(before.timestamp + 480) & 0xFFFFFFFF}


async def test_on_done_may_start_the_next_prompt(rig: Rig) -> None:
    output = rig.output()
    second = ClipSource(level(-700, 2 * FRAME))
    output.play(ClipSource(level(700, FRAME)), lambda: output.play(second))
    rig.tick(output, 6)
    payloads = [p.payload for p in await rig.phone.packets()]
    assert payloads[0] == ulaw_encode(level(700))
    assert payloads.count(ulaw_encode(level(-700))) == 2
    assert rig.idle == [output]


async def test_closed_endpoint_finishes_the_output(rig: Rig) -> None:
    output = rig.output()
    output.play(ClipSource(level(1000, 10 * FRAME)))
    await rig.media.release(rig.endpoint)
    rig.tick(output)
    assert output.finished
    assert await rig.phone.packets(0.05) == []


# --------------------------------------------------------------------------- mixing


async def test_prompt_and_conversation_are_summed(rig: Rig) -> None:
    prompt = ramp(2 * FRAME, -1000, 5)
    heard = ramp(2 * FRAME, 700, -7)
    output = rig.output()
    output.mix_conversation = True
    output.conversation.push(heard)  # two frames: the prebuffer is met
    output.play(ClipSource(prompt))
    rig.tick(output, 2)
    packets = await rig.phone.packets()
    expected = (prompt.astype(np.int32) + heard.astype(np.int32)).astype(np.int16)
    assert [p.payload for p in packets] == [
        ulaw_encode(expected[:FRAME]),
        ulaw_encode(expected[FRAME:]),
    ]


async def test_mix_clips_instead_of_wrapping(rig: Rig) -> None:
    prompt = np.concatenate((level(30000), level(-30000)))
    heard = np.concatenate((level(10000), level(-10000)))
    output = rig.output()
    output.mix_conversation = True
    output.conversation.push(heard)
    output.play(ClipSource(prompt))
    rig.tick(output, 2)
    packets = await rig.phone.packets()
    assert [p.payload for p in packets] == [
        ulaw_encode(level(32767)),
        ulaw_encode(level(-32768)),
    ]


async def test_prompt_alone_while_the_conversation_is_not_buffered_yet(rig: Rig) -> None:
    prompt = ramp(2 * FRAME, 100, 9)
    output = rig.output()
    output.mix_conversation = True
    output.conversation.push(level(5000, FRAME))  # below the two-frame prebuffer
    output.play(ClipSource(prompt))
    rig.tick(output)
    output.conversation.push(level(5000, FRAME))
    rig.tick(output)
    packets = await rig.phone.packets()
    mixed = (prompt[FRAME:].astype(np.int32) + 5000).astype(np.int16)
    assert [p.payload for p in packets] == [ulaw_encode(prompt[:FRAME]), ulaw_encode(mixed)]


async def test_conversation_is_dropped_when_not_mixed(rig: Rig) -> None:
    prompt = ramp(FRAME, 100, 9)
    output = rig.output()
    output.conversation.push(level(5000, 3 * FRAME))
    output.play(ClipSource(prompt))
    rig.tick(output)
    assert len(output.conversation) == 0
    packets = await rig.phone.packets()
    assert [p.payload for p in packets] == [ulaw_encode(prompt)]


async def test_prompt_end_goes_idle_even_with_conversation_queued(rig: Rig) -> None:
    output = rig.output()
    output.mix_conversation = True
    output.conversation.push(level(5000, 5 * FRAME))
    output.play(ClipSource(level(10, FRAME)), lambda: rig.done.append("done"))
    rig.tick(output, 2)
    assert rig.done == ["done"]
    assert rig.idle == [output]  # the relay takes over the conversation again
    assert len(await rig.phone.packets()) == 1


# --------------------------------------------------------------------------- DTMF


async def test_key_press_during_a_prompt(rig: Rig) -> None:
    prompt = ramp(20 * FRAME, -3000, 2)
    output = rig.output()
    output.mix_conversation = True
    output.play(ClipSource(prompt))
    rig.tick(output)  # one prompt frame before the press
    output.queue_dtmf(dtmf_steps("5", 100, 40))
    output.conversation.push(level(4000, 3 * FRAME))  # a press replaces what would be heard
    rig.tick(output, 5)
    assert len(output.conversation) == 0
    rig.tick(output, 3)  # two pause ticks, then the prompt alone
    packets = await rig.phone.packets()
    assert len(packets) == 1 + 7 + 3
    audio, presses, after = packets[0], packets[1:8], packets[8:]
    seq0, ts0 = audio.sequence, audio.timestamp

    assert [p.sequence for p in packets] == [(seq0 + i) & 0xFFFF for i in range(len(packets))]
    assert {p.ssrc for p in packets} == {rig.endpoint.output.ssrc}

    press_ts = (ts0 + FRAME) & 0xFFFFFFFF  # the press takes a new timestamp ...
    assert [p.payload_type for p in presses] == [101] * 7
    assert [p.timestamp for p in presses] == [press_ts] * 7  # ... which every packet repeats
    assert [p.marker for p in presses] == [True] + [False] * 6
    assert [event(p) for p in presses] == [
        TelephoneEvent(5, False, 10, 160),
        TelephoneEvent(5, False, 10, 320),
        TelephoneEvent(5, False, 10, 480),
        TelephoneEvent(5, False, 10, 640),
        TelephoneEvent(5, True, 10, 800),
        TelephoneEvent(5, True, 10, 800),
        TelephoneEvent(5, True, 10, 800),
    ]

    # Audio resumes one press length (800 samples) after the press's timestamp, no marker;
    # the prompt was paused during the press and continues where it was.
    assert [p.payload_type for p in after] == [0, 0, 0]
    assert [p.marker for p in after] == [False, False, False]
    assert [p.timestamp for p in after] == [
        (press_ts + 800 + i * FRAME) & 0xFFFFFFFF for i in range(3)
    ]
    assert [p.payload for p in after] == [
        ulaw_encode(prompt[i * FRAME : (i + 1) * FRAME]) for i in (1, 2, 3)
    ]


async def test_key_presses_alone_then_idle(rig: Rig) -> None:
    output = rig.output()
    steps = dtmf_steps("1#", 60, 60)  # 3 event ticks + 3 pause ticks per key
    output.queue_dtmf(steps)
    assert output.busy
    rig.tick(output, len(steps))
    assert rig.idle == [output]
    packets = await rig.phone.packets()
    events = [p for p in packets if p.payload_type == 101]
    audio = [p for p in packets if p.payload_type == 0]
    assert len(events) == 2 * 5
    assert all(p.payload == SILENCE_ULAW for p in audio)  # pauses carry silence
    assert [p.sequence for p in packets] == [
        (packets[0].sequence + i) & 0xFFFF for i in range(len(packets))
    ]
    first, second = events[:5], events[5:]
    assert first[0].marker and second[0].marker
    assert not any(p.marker for p in first[1:] + second[1:] + audio)
    assert [event(p).event for p in events] == [1] * 5 + [11] * 5
    assert {p.timestamp for p in first} == {first[0].timestamp}
    assert {p.timestamp for p in second} == {second[0].timestamp}
    # the pause frames follow the first press at 20 ms steps, the second press the last of them
    between = [p for p in audio if first[-1].sequence < p.sequence < second[0].sequence]
    assert between
    assert between[0].timestamp == (first[0].timestamp + 480) & 0xFFFFFFFF
    assert second[0].timestamp == (between[-1].timestamp + FRAME) & 0xFFFFFFFF


async def test_pause_ticks_carry_the_conversation(rig: Rig) -> None:
    output = rig.output()
    output.mix_conversation = True
    output.queue_dtmf(dtmf_steps("9", 20, 60))
    rig.tick(output)  # the press: one tick, end packet three times
    output.conversation.push(ramp(2 * FRAME, 10, 13))
    rig.tick(output)
    packets = await rig.phone.packets()
    assert [p.payload_type for p in packets] == [101, 101, 101, 0]
    assert packets[0].marker and not packets[1].marker and not packets[2].marker
    assert {p.timestamp for p in packets[:3]} == {packets[0].timestamp}
    assert [event(p) for p in packets[:3]] == [TelephoneEvent(9, True, 10, 160)] * 3
    assert packets[3].payload == ulaw_encode(ramp(2 * FRAME, 10, 13)[:FRAME])
    assert packets[3].timestamp == (packets[0].timestamp + 160) & 0xFFFFFFFF


async def test_no_telephone_event_means_no_event_packets(rig: Rig) -> None:
    output = rig.output(PCMU_NO_EVENTS)
    steps = dtmf_steps("1", 100, 100)
    output.queue_dtmf(steps)
    rig.tick(output, len(steps))
    assert rig.idle == [output]
    packets = await rig.phone.packets()
    assert packets
    assert {p.payload_type for p in packets} == {0}


async def test_event_burst_shape(rig: Rig) -> None:
    """A burst sent by hand: `start` takes a new timestamp; others repeat the press's."""
    output = rig.output()
    payload = encode_event(3, False, 10, 160)
    output.queue_dtmf(
        [EventBurst((payload, payload), True, 320), EventBurst((payload,), False, 320)]
    )
    rig.tick(output, 2)
    packets = await rig.phone.packets()
    assert [p.marker for p in packets] == [True, False, False]
    assert len({p.timestamp for p in packets}) == 1
    assert [p.sequence for p in packets] == [(packets[0].sequence + i) & 0xFFFF for i in range(3)]


# --------------------------------------------------------------------------- dtmf_steps


def test_dtmf_steps_for_one_key() -> None:
    steps = dtmf_steps("1", 100, 100)
    assert len(steps) == 10
    bursts = [s for s in steps[:5] if s is not None]
    assert len(bursts) == 5
    assert steps[5:] == [None] * 5
    assert [b.start for b in bursts] == [True, False, False, False, False]
    assert {b.samples for b in bursts} == {800}
    assert [len(b.payloads) for b in bursts] == [1, 1, 1, 1, 3]
    assert [decode_event(b.payloads[0]) for b in bursts] == [
        TelephoneEvent(1, False, 10, 160),
        TelephoneEvent(1, False, 10, 320),
        TelephoneEvent(1, False, 10, 480),
        TelephoneEvent(1, False, 10, 640),
        TelephoneEvent(1, True, 10, 800),
    ]
    assert len(set(bursts[-1].payloads)) == 1


def test_dtmf_steps_partial_last_tick() -> None:
    steps = dtmf_steps("#", 50, 30)
    bursts = [s for s in steps if s is not None]
    assert [decode_event(b.payloads[0]) for b in bursts] == [
        TelephoneEvent(11, False, 10, 160),
        TelephoneEvent(11, False, 10, 320),
        TelephoneEvent(11, True, 10, 400),
    ]
    assert {b.samples for b in bursts} == {400}
    assert steps[3:] == [None, None]


def test_dtmf_steps_press_shorter_than_a_tick() -> None:
    steps = dtmf_steps("d", 10, 0)
    assert len(steps) == 2
    burst, pause = steps
    assert pause is None
    assert burst is not None
    assert burst.start and burst.samples == 80
    assert [decode_event(p) for p in burst.payloads] == [TelephoneEvent(15, True, 10, 80)] * 3


def test_dtmf_steps_several_keys_in_order() -> None:
    steps = dtmf_steps("0*A", 40, 20)
    assert len(steps) == 3 * (2 + 1)
    codes = [decode_event(s.payloads[0]).event for s in steps if s is not None and s.start]
    assert codes == [0, 10, 12]
    assert [s is None for s in steps] == [False, False, True] * 3


def test_dtmf_steps_no_keys() -> None:
    assert dtmf_steps("", 100, 100) == []


def test_dtmf_steps_refuses_a_bad_key() -> None:
    with pytest.raises(DtmfError, match=r"invalid DTMF digit 'x': expected one of 0-9 \* # A-D"):
        dtmf_steps("1x", 100, 100)
