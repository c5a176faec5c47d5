"""Ademco Contact ID (SIA DC-05), sans-I/O: the alarm message and both ends of its exchange.

An alarm panel calls a receiving centre, which answers and sends a handshake (1400 Hz for
100 ms, 100 ms of silence, 2300 Hz for 100 ms). The panel waits 250-300 ms and sends its
16-digit message as in-band DTMF, 50-60 ms per tone with 50-60 ms of silence between; the
centre checks the checksum digit and acknowledges with the kissoff, 750-1000 ms of 1400 Hz.
No kissoff within 1.25 s of the message's end means it was not understood: the panel sends it
again, four attempts in all.

The message is ACCT MT Q XYZ GG CCC S: account (4), message type (`18`), event qualifier
(1 new event / 3 new restore / 6 status report), event code (3), partition (2), zone or user
(3) and a checksum digit that makes the sum of all 16 digit values a multiple of 15. Digits
are hexadecimal-like: `0` counts as 10, and the values 11-15 (`B`-`F`) travel as the DTMF keys
`*`, `#`, `A`, `B` and `C`.

`ContactIdSender` (the panel) and `ContactIdReceiver` (the centre) are driven by the caller:
`receive(pcm, now)` with the audio heard from the other end, `receive_digit(key, now)` for
key presses that arrived out of band (RFC 4733, SIP INFO), and `next_frame(now)` for the
next 20 ms of 8 kHz audio to send. Nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from pypbx.media.dtmf import InbandDtmfDetector, dtmf_tones

__all__ = [
    "EVENT_NAMES",
    "FRAME",
    "HANDSHAKE_HIGH_HZ",
    "HANDSHAKE_LOW_HZ",
    "KISSOFF_HZ",
    "QUALIFIERS",
    "RATE",
    "ContactIdError",
    "ContactIdMessage",
    "ContactIdReceiver",
    "ContactIdSender",
    "SendResult",
    "ToneMeter",
    "checksum_digit",
    "decode",
    "event_name",
    "tone",
]

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]

RATE: Final = 8000
FRAME: Final = 160  # 20 ms
FRAME_SECONDS: Final = FRAME / RATE
HANDSHAKE_LOW_HZ: Final = 1400.0
HANDSHAKE_HIGH_HZ: Final = 2300.0
KISSOFF_HZ: Final = 1400.0

# Event qualifier names (the spec's EventQualifier values) and their digit. The tables are
# read-only views: the module holds no state anyone could change.
QUALIFIERS: Final = MappingProxyType({"NewEvent": "1", "NewRestore": "3", "StatusReport": "6"})
_QUALIFIER_NAMES: Final = MappingProxyType({digit: name for name, digit in QUALIFIERS.items()})
MESSAGE_TYPES: Final = ("18", "98")  # 18 preferred, 98 optional (SIA DC-05)

# Contact ID digit -> its value in the checksum, and the DTMF key it travels as.
_DIGIT_VALUES: Final = MappingProxyType(
    {str(n): n for n in range(1, 10)} | {"0": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15}
)
_DIGIT_OF_VALUE: Final = MappingProxyType({value: d for d, value in _DIGIT_VALUES.items()})
_KEY_OF_DIGIT: Final = MappingProxyType(
    {str(n): str(n) for n in range(10)} | {"B": "*", "C": "#", "D": "A", "E": "B", "F": "C"}
)
_DIGIT_OF_KEY: Final = MappingProxyType({key: digit for digit, key in _KEY_OF_DIGIT.items()})
_MESSAGE_LENGTH: Final = 16


class ContactIdError(ValueError):
    """A message that cannot be built or decoded; `field` names the parameter at fault when
    the error is in one (`AccountNumber`, `EventCode`, ...)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field


def checksum_digit(body: str) -> str:
    """The digit that makes the values of `body` plus itself a multiple of 15 (a sum that
    already is one gets `F`, value 15, since no digit is worth 0)."""
    try:
        total = sum(_DIGIT_VALUES[digit] for digit in body.upper())
    except KeyError as exc:
        raise ContactIdError(f"{exc.args[0]!r} is not a Contact ID digit") from None
    return _DIGIT_OF_VALUE[15 - total % 15]


@dataclass(frozen=True, slots=True)
class ContactIdMessage:
    """One alarm message, its fields as they travel (zero-padded Contact ID digits)."""

    account: str
    qualifier: str  # the digit: 1, 3 or 6
    event_code: str
    partition: str
    zone: str
    message_type: str = "18"

    @classmethod
    def build(
        cls,
        *,
        account: str,
        event_code: str,
        partition: str,
        zone: str,
        qualifier: str = "NewEvent",
    ) -> ContactIdMessage:
        """A message from the spec's parameters: decimal digits, the shorter fields padded
        with leading zeros; ContactIdError names the parameter that does not fit."""
        name = next((n for n in QUALIFIERS if n.casefold() == qualifier.strip().casefold()), None)
        if name is None:
            raise ContactIdError("must be NewEvent, NewRestore or StatusReport", "EventQualifier")
        return cls(
            account=_field(account, 4, "AccountNumber", exact=True),
            qualifier=QUALIFIERS[name],
            event_code=_field(event_code, 3, "EventCode"),
            partition=_field(partition, 2, "PartitionNumber"),
            zone=_field(zone, 3, "ZoneNumber"),
        )

    @property
    def body(self) -> str:
        """The 15 digits before the checksum."""
        return (
            self.account
            + self.message_type
            + self.qualifier
            + self.event_code
            + self.partition
            + self.zone
        )

    @property
    def digits(self) -> str:
        """All 16 Contact ID digits, checksum last."""
        return self.body + checksum_digit(self.body)

    @property
    def dtmf(self) -> str:
        """The 16 DTMF keys that carry the message."""
        return "".join(_KEY_OF_DIGIT[digit] for digit in self.digits)

    @property
    def qualifier_name(self) -> str:
        return _QUALIFIER_NAMES.get(self.qualifier, "Unknown")

    @property
    def event_name(self) -> str:
        return event_name(self.event_code)


def _field(value: str, length: int, name: str, *, exact: bool = False) -> str:
    stripped = value.strip()
    if not (stripped.isascii() and stripped.isdigit()):
        raise ContactIdError("must be decimal digits", name)
    if len(stripped) > length or (exact and len(stripped) != length):
        raise ContactIdError(f"must be {'exactly' if exact else 'at most'} {length} digits", name)
    return stripped.zfill(length)


def decode(keys: str) -> ContactIdMessage:
    """The message carried by 16 DTMF keys; ContactIdError says why they are not one."""
    if len(keys) != _MESSAGE_LENGTH:
        raise ContactIdError(f"a message has 16 digits, got {len(keys)}")
    try:
        digits = "".join(_DIGIT_OF_KEY[key] for key in keys.upper())
    except KeyError as exc:
        raise ContactIdError(f"DTMF key {exc.args[0]!r} is not a Contact ID digit") from None
    if digits[4:6] not in MESSAGE_TYPES:
        raise ContactIdError(f"message type {digits[4:6]} is not Contact ID (18 or 98)")
    if checksum_digit(digits[:15]) != digits[15]:
        raise ContactIdError(f"bad checksum in {digits}")
    return ContactIdMessage(
        account=digits[0:4],
        message_type=digits[4:6],
        qualifier=digits[6],
        event_code=digits[7:10],
        partition=digits[10:12],
        zone=digits[12:15],
    )


def event_name(code: str) -> str:
    """The SIA DC-05 name of an event code (`110` -> `Fire`), `Unknown` if it has none."""
    return EVENT_NAMES.get(code.strip().upper().zfill(3), "Unknown")


EVENT_NAMES: Final = MappingProxyType(
    {
        # 1xx alarms
        "100": "Medical",
        "101": "Personal emergency",
        "102": "Fail to report in",
        "110": "Fire",
        "111": "Smoke",
        "112": "Combustion",
        "113": "Water flow",
        "114": "Heat",
        "115": "Pull station",
        "116": "Duct",
        "117": "Flame",
        "118": "Near alarm",
        "120": "Panic",
        "121": "Duress",
        "122": "Silent panic",
        "123": "Audible panic",
        "124": "Duress, access granted",
        "125": "Duress, egress granted",
        "130": "Burglary",
        "131": "Perimeter",
        "132": "Interior",
        "133": "24 hour",
        "134": "Entry/Exit",
        "135": "Day/Night",
        "136": "Outdoor",
        "137": "Tamper",
        "138": "Near alarm",
        "139": "Intrusion verifier",
        "140": "General alarm",
        "141": "Polling loop open",
        "142": "Polling loop short",
        "143": "Expansion module failure",
        "144": "Sensor tamper",
        "145": "Expansion module tamper",
        "146": "Silent burglary",
        "147": "Sensor supervision failure",
        "150": "24 hour non-burglary",
        "151": "Gas detected",
        "152": "Refrigeration",
        "153": "Loss of heat",
        "154": "Water leakage",
        "155": "Foil break",
        "156": "Day trouble",
        "157": "Low bottled gas level",
        "158": "High temperature",
        "159": "Low temperature",
        "161": "Loss of air flow",
        "162": "Carbon monoxide detected",
        "163": "Tank level",
        # 2xx supervisory
        "200": "Fire supervisory",
        "201": "Low water pressure",
        "202": "Low CO2",
        "203": "Gate valve sensor",
        "204": "Low water level",
        "205": "Pump activated",
        "206": "Pump failure",
        # 3xx troubles
        "300": "System trouble",
        "301": "AC loss",
        "302": "Low system battery",
        "303": "RAM checksum bad",
        "304": "ROM checksum bad",
        "305": "System reset",
        "306": "Panel programming changed",
        "307": "Self-test failure",
        "308": "System shutdown",
        "309": "Battery test failure",
        "310": "Ground fault",
        "311": "Battery missing/dead",
        "312": "Power supply overcurrent",
        "313": "Engineer reset",
        "320": "Sounder/relay",
        "321": "Bell 1",
        "322": "Bell 2",
        "323": "Alarm relay",
        "324": "Trouble relay",
        "325": "Reversing relay",
        "330": "System peripheral trouble",
        "333": "Expansion module failure",
        "350": "Communication trouble",
        "351": "Telco 1 fault",
        "352": "Telco 2 fault",
        "354": "Failure to communicate event",
        "370": "Protection loop",
        "373": "Fire trouble",
        "380": "Sensor trouble",
        "381": "Loss of supervision, RF",
        "383": "Sensor tamper",
        "384": "RF low battery",
        # 4xx open/close and remote access
        "400": "Open/Close",
        "401": "Open/Close by user",
        "402": "Group open/close",
        "403": "Automatic open/close",
        "406": "Cancel",
        "407": "Remote arm/disarm",
        "408": "Quick arm",
        "409": "Keyswitch open/close",
        "441": "Armed stay",
        "442": "Keyswitch armed stay",
        "450": "Exception open/close",
        "451": "Early open/close",
        "452": "Late open/close",
        "453": "Failed to open",
        "454": "Failed to close",
        "455": "Auto-arm failed",
        "456": "Partial arm",
        "457": "Exit error",
        "458": "User on premises",
        "459": "Recent close",
        "461": "Wrong code entry",
        "462": "Legal code entry",
        "463": "Re-arm after alarm",
        "464": "Auto-arm time extended",
        "465": "Panic alarm reset",
        # 5xx bypasses
        "570": "Zone/sensor bypass",
        "571": "Fire bypass",
        "572": "24 hour zone bypass",
        "573": "Burglary bypass",
        "574": "Group bypass",
        # 6xx tests and miscellaneous
        "601": "Manual trigger test report",
        "602": "Periodic test report",
        "603": "Periodic RF transmission",
        "604": "Fire test",
        "605": "Status report to follow",
        "606": "Listen-in to follow",
        "607": "Walk test mode",
        "608": "Periodic test, system trouble present",
        "611": "Point tested OK",
        "612": "Point not tested",
        "621": "Event log reset",
        "622": "Event log 50% full",
        "623": "Event log 90% full",
        "624": "Event log overflow",
        "625": "Time/date reset",
        "626": "Time/date inaccurate",
        "627": "Program mode entry",
        "628": "Program mode exit",
    }
)


# --- tones --------------------------------------------------------------------------------

_FULL_SCALE = 32768.0
_TONE_LEVEL_DBFS = -9.0
_TONES: Final = (HANDSHAKE_LOW_HZ, HANDSHAKE_HIGH_HZ)
# A block shows a tone when that frequency carries this share of its energy: a pure tone
# gives ~1, G.711 noise takes a few per cent, a block half tone and half silence gives 0.5,
# DTMF, speech and noise far less.
_TONE_SHARE = 0.6


def _readonly(array: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    array.flags.writeable = False
    return array


_OMEGA = 2 * np.pi * np.array(_TONES) / RATE
# One matrix product measures both tones in every block: cosine parts, then sine parts.
_BASIS = _readonly(
    np.hstack(
        (np.cos(np.outer(np.arange(FRAME), _OMEGA)), np.sin(np.outer(np.arange(FRAME), _OMEGA)))
    )
)


def tone(frequency: float, seconds: float, level_dbfs: float = _TONE_LEVEL_DBFS) -> Pcm:
    """A sine tone (handshake, kissoff) at `level_dbfs` peak."""
    amplitude = _FULL_SCALE * 10.0 ** (level_dbfs / 20.0)
    t = np.arange(round(seconds * RATE)) / RATE
    pcm: Pcm = np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    return pcm


def _silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


class ToneMeter:
    """Labels each 20 ms block of the audio heard: 1400.0, 2300.0, or 0.0 for neither.

    Each block's energy at the two frequencies is a single-bin DFT (what Goertzel computes),
    done for all blocks of a chunk as one matrix product. A block shows a tone when the tone
    is at least `min_level_dbfs` (peak) and carries most of the block's energy.
    """

    def __init__(self, *, min_level_dbfs: float = -45.0) -> None:
        amplitude = _FULL_SCALE * 10.0 ** (min_level_dbfs / 20.0)
        self._min_energy = amplitude * amplitude * FRAME / 2
        self._pending = np.zeros(0, dtype=np.float64)

    def feed(self, pcm: Pcm) -> list[float]:
        samples = np.concatenate((self._pending, np.asarray(pcm, dtype=np.float64).ravel()))
        count = len(samples) // FRAME
        self._pending = samples[count * FRAME :]
        if count == 0:
            return []
        blocks = samples[: count * FRAME].reshape(count, FRAME)
        parts = blocks @ _BASIS
        squares = parts * parts
        energies = (squares[:, : len(_TONES)] + squares[:, len(_TONES) :]) * (2.0 / FRAME)
        totals = np.einsum("ij,ij->i", blocks, blocks)
        labels: list[float] = []
        for energy, total in zip(energies.tolist(), totals.tolist(), strict=True):
            label = 0.0
            for frequency, part in zip(_TONES, energy, strict=True):
                if part >= self._min_energy and part >= _TONE_SHARE * total:
                    label = frequency
            labels.append(label)
        return labels


@dataclass(frozen=True, slots=True)
class _Run:
    """A tone that has ended: how long it lasted, and the tone before it and the gap between
    them, which is what telling a handshake from a kissoff takes."""

    tone: float
    blocks: int
    before: float = 0.0
    before_blocks: int = 0
    gap: int = 0


class _Runs:
    """Run lengths of the tone labels, one 20 ms block at a time."""

    def __init__(self) -> None:
        self.tone = 0.0
        self.blocks = 0
        self._last = _Run(0.0, 0)  # the last tone that ended
        self._gap = 0  # blocks without a tone since then

    def step(self, label: float) -> _Run | None:
        """Advance one block; returns the tone that just ended, if one did."""
        if label == self.tone:
            self.blocks += 1
            return None
        ended = None
        if self.tone:
            ended = _Run(self.tone, self.blocks, self._last.tone, self._last.blocks, self._gap)
            self._last, self._gap = ended, 0
        else:
            self._gap += self.blocks
        self.tone, self.blocks = label, 1
        return ended


# Handshake: 100 ms of each tone (+-3%, i.e. 4-5 blocks; 3 is enough with any alignment),
# 100 ms apart. A 1400 Hz run of 20 blocks or more is a kissoff, never a handshake's half.
_HANDSHAKE_MIN_BLOCKS = 3
_HANDSHAKE_MAX_BLOCKS = 15
_HANDSHAKE_MAX_GAP_BLOCKS = 15
_KISSOFF_MIN_BLOCKS = 20  # 400 ms (SIA DC-05: detect at least 400 ms)
_KISSOFF_MAX_BLOCKS = 60  # a tone this long is taken as a kissoff without waiting its end


def _is_handshake(run: _Run) -> bool:
    """Whether a tone that just ended completes a handshake."""
    return (
        run.tone == HANDSHAKE_HIGH_HZ
        and _HANDSHAKE_MIN_BLOCKS <= run.blocks <= _HANDSHAKE_MAX_BLOCKS
        and run.before == HANDSHAKE_LOW_HZ
        and _HANDSHAKE_MIN_BLOCKS <= run.before_blocks <= _HANDSHAKE_MAX_BLOCKS
        and run.gap <= _HANDSHAKE_MAX_GAP_BLOCKS
    )


class _Output:
    """Audio queued for sending, handed out 20 ms at a time (silence when there is none)."""

    def __init__(self) -> None:
        self._chunks: deque[Pcm] = deque()
        self._position = 0

    def queue(self, pcm: Pcm) -> None:
        if len(pcm):
            self._chunks.append(pcm)

    def clear(self) -> None:
        self._chunks.clear()
        self._position = 0

    @property
    def empty(self) -> bool:
        return not self._chunks

    def frame(self) -> Pcm:
        out = np.zeros(FRAME, dtype=np.int16)
        filled = 0
        while filled < FRAME and self._chunks:
            chunk = self._chunks[0]
            take = min(FRAME - filled, len(chunk) - self._position)
            out[filled : filled + take] = chunk[self._position : self._position + take]
            filled += take
            self._position += take
            if self._position >= len(chunk):
                self._chunks.popleft()
                self._position = 0
        return out


# --- the panel ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    """How sending ended: `reason` says why it failed (empty on success)."""

    success: bool
    reason: str
    attempts: int


class _SenderState(Enum):
    WAIT_HANDSHAKE = "wait handshake"
    PAUSE = "pause"  # after a handshake, before the message
    SENDING = "sending"
    WAIT_KISSOFF = "wait kissoff"
    DONE = "done"


class ContactIdSender:
    """The alarm panel's side: waits for the handshake, sends the message, waits for the
    kissoff, sends again if none comes (`attempts` in all).

    The message also goes again at once when the receiver repeats its handshake, which is
    how a receiver asks for it after a bad checksum. `result` is set when it is over.
    """

    def __init__(
        self,
        message: ContactIdMessage,
        now: float,
        *,
        handshake_timeout: float = 10.0,
        kissoff_timeout: float = 1.25,
        attempts: int = 4,
        pause: float = 0.25,
        tone_ms: int = 55,
        gap_ms: int = 55,
        level_dbfs: float = -8.0,
    ) -> None:
        self.message = message
        self.result: SendResult | None = None
        self.attempts = 0
        self._max_attempts = attempts
        self._handshake_deadline = now + handshake_timeout
        self._kissoff_timeout = kissoff_timeout
        self._pause = pause
        self._state = _SenderState.WAIT_HANDSHAKE
        self._until = 0.0  # end of the pause / deadline for the kissoff to start
        self._meter = ToneMeter()
        self._runs = _Runs()
        self._kissoff_heard = False
        self._output = _Output()
        signal = dtmf_tones(message.dtmf, tone_ms=tone_ms, pause_ms=gap_ms, level_dbfs=level_dbfs)
        self._signal = np.concatenate((signal, _silence(gap_ms / 1000)))

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def state(self) -> str:
        return self._state.value

    def receive(self, pcm: Pcm, now: float) -> None:
        """Audio heard from the receiver."""
        for label in self._meter.feed(pcm):
            if self.done:
                return
            self._block(label, now)
        self._check_time(now)

    def next_frame(self, now: float) -> Pcm:
        """The next 20 ms to send."""
        self._check_time(now)
        if self._state is _SenderState.PAUSE and now >= self._until:
            self._transmit()
        if self._state is not _SenderState.SENDING:
            return np.zeros(FRAME, dtype=np.int16)
        frame = self._output.frame()
        if self._output.empty:
            self._state = _SenderState.WAIT_KISSOFF
            self._until = now + FRAME_SECONDS + self._kissoff_timeout
        return frame

    def abort(self, reason: str) -> None:
        """Stop (the call ended): fails with `reason` unless already over, or unless a
        kissoff has been heard for long enough to count, which only its end was awaited."""
        if self.result is None:
            self._finish(self._kissoff_heard, "" if self._kissoff_heard else reason)

    def _block(self, label: float, now: float) -> None:
        runs = self._runs
        ended = runs.step(label)
        if self.attempts and runs.tone == KISSOFF_HZ and runs.blocks >= _KISSOFF_MIN_BLOCKS:
            self._kissoff_heard = True
        if self._kissoff_heard and (runs.tone != KISSOFF_HZ or runs.blocks >= _KISSOFF_MAX_BLOCKS):
            self._finish(True, "")
            return
        if ended is None or not _is_handshake(ended):
            return
        if self._state in (_SenderState.WAIT_HANDSHAKE, _SenderState.WAIT_KISSOFF):
            log.debug("Contact ID handshake heard (%s)", self._state.value)
            self._state = _SenderState.PAUSE
            self._until = now + self._pause

    def _check_time(self, now: float) -> None:
        state = self._state
        if state is _SenderState.WAIT_HANDSHAKE and now >= self._handshake_deadline:
            self._finish(False, "no handshake")
        elif state is _SenderState.WAIT_KISSOFF and now >= self._until:
            if self._runs.tone == KISSOFF_HZ:
                return  # a 1400 Hz tone has started: let it show whether it is the kissoff
            if self.attempts >= self._max_attempts:
                self._finish(False, "no kissoff")
            else:
                log.debug("no Contact ID kissoff after attempt %d", self.attempts)
                self._state = _SenderState.PAUSE
                self._until = now + self._pause

    def _transmit(self) -> None:
        if self.attempts >= self._max_attempts:
            self._finish(False, "no kissoff")
            return
        self.attempts += 1
        self._output.clear()
        self._output.queue(self._signal)
        self._state = _SenderState.SENDING

    def _finish(self, success: bool, reason: str) -> None:
        self._state = _SenderState.DONE
        self._output.clear()
        self.result = SendResult(success, reason, self.attempts)


# --- the receiving centre -----------------------------------------------------------------


class _ReceiverState(Enum):
    SETTLE = "settle"  # the line settles after answer
    HANDSHAKE = "handshake"  # sending the handshake
    LISTEN = "listen"
    KISSOFF = "kissoff"
    DONE = "done"


_CONTACT_ID_KEYS = re.compile(r"[0-9*#ABC]")


class ContactIdReceiver:
    """The receiving centre's side: handshake, 16 digits, checksum, kissoff.

    A message with a bad checksum, a digit that Contact ID does not use or digits that stop
    short is dropped and the handshake sent again, which asks the panel to repeat it. With
    no digits at all for `listen_timeout` after a handshake, the handshake is repeated too,
    `handshakes` times in all. `message` is set once a valid one has been acknowledged.
    """

    def __init__(
        self,
        now: float,
        *,
        settle: float = 1.0,
        listen_timeout: float = 4.0,
        handshakes: int = 4,
        timeout: float = 60.0,
        digit_timeout: float = 0.5,
        kissoff_seconds: float = 0.8,
    ) -> None:
        self.message: ContactIdMessage | None = None
        self.reason = ""  # why it ended without a message
        self.bad_messages = 0
        self.handshakes_sent = 0
        self._max_handshakes = handshakes
        self._listen_timeout = listen_timeout
        self._deadline = now + timeout
        self._digit_timeout = digit_timeout
        self._kissoff = tone(KISSOFF_HZ, kissoff_seconds)
        self._handshake = np.concatenate(
            (
                tone(HANDSHAKE_LOW_HZ, 0.1),
                _silence(0.1),
                tone(HANDSHAKE_HIGH_HZ, 0.1),
            )
        )
        self._state = _ReceiverState.SETTLE
        self._until = now + settle  # when the current wait ends
        self._keys: list[str] = []
        self._last_key = 0.0
        self._detector = InbandDtmfDetector()
        self._output = _Output()

    @property
    def done(self) -> bool:
        return self._state is _ReceiverState.DONE

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def keys(self) -> str:
        """The keys of the message being received."""
        return "".join(self._keys)

    def receive(self, pcm: Pcm, now: float) -> None:
        """Audio heard from the panel: its DTMF tones are found here."""
        for digit in self._detector.feed(pcm, now):
            self.receive_digit(digit.digit, now)
        self._check_time(now)

    def receive_digit(self, key: str, now: float) -> None:
        """A key press, whether found in the audio or received as an event."""
        if self._state not in (_ReceiverState.HANDSHAKE, _ReceiverState.LISTEN):
            return
        key = key.upper()
        if not _CONTACT_ID_KEYS.fullmatch(key):
            self._bad(f"DTMF key {key!r} is not a Contact ID digit", now)
            return
        self._keys.append(key)
        self._last_key = now
        if len(self._keys) < _MESSAGE_LENGTH:
            return
        keys = "".join(self._keys)
        self._keys.clear()
        try:
            message = decode(keys)
        except ContactIdError as exc:
            self._bad(f"{exc}", now)
            return
        log.debug("Contact ID message %s received", message.digits)
        self.message = message
        self._state = _ReceiverState.KISSOFF
        self._output.clear()
        self._output.queue(self._kissoff)

    def next_frame(self, now: float) -> Pcm:
        """The next 20 ms to send."""
        self._check_time(now)
        if self._state is _ReceiverState.SETTLE and now >= self._until:
            self._send_handshake()
        frame = self._output.frame()
        if self._output.empty:
            if self._state is _ReceiverState.HANDSHAKE:
                self._state = _ReceiverState.LISTEN
                self._until = now + FRAME_SECONDS + self._listen_timeout
            elif self._state is _ReceiverState.KISSOFF:
                self._state = _ReceiverState.DONE
        return frame

    def abort(self, reason: str) -> None:
        """Stop (the call ended). A message already acknowledged stays received."""
        if self._state is not _ReceiverState.DONE:
            self._state = _ReceiverState.DONE
            if self.message is None:
                self.reason = reason

    def _check_time(self, now: float) -> None:
        state = self._state
        if state is _ReceiverState.DONE or state is _ReceiverState.KISSOFF:
            return
        if now >= self._deadline:
            self._stop("timeout")
            return
        if self._keys and now - self._last_key > self._digit_timeout:
            self._bad(f"message stopped after {len(self._keys)} digits", now)
        elif state is _ReceiverState.LISTEN and not self._keys and now >= self._until:
            if self.handshakes_sent >= self._max_handshakes:
                self._stop("no message")
            else:
                self._state = _ReceiverState.SETTLE
                self._until = now

    def _bad(self, reason: str, now: float) -> None:
        """Drop the digits so far and ask again with a new handshake, after a short pause."""
        log.debug("Contact ID message dropped: %s", reason)
        self.bad_messages += 1
        self._keys.clear()
        if self.handshakes_sent >= self._max_handshakes:
            self._stop(f"no valid message ({reason})")
            return
        self._state = _ReceiverState.SETTLE
        self._until = now + 0.25

    def _send_handshake(self) -> None:
        self.handshakes_sent += 1
        self._state = _ReceiverState.HANDSHAKE
        self._output.clear()
        self._output.queue(self._handshake)

    def _stop(self, reason: str) -> None:
        self._state = _ReceiverState.DONE
        self._output.clear()
        self.reason = reason
