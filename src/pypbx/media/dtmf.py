"""DTMF, sans-I/O: RFC 4733 telephone-events out and in, keypad tones out, tone detection in.

A key press reaches the PBX in one of three ways: as RTP telephone-events (RFC 4733), as audio
tones inside the voice stream (in-band), or as a SIP INFO request (`pypbx.sip.dtmf_info`). All
three end up as one `DtmfDigit` per press, so the call layer does not care which way it came.

Nothing here reads a clock or touches a socket: elapsed time and `now` come in as arguments,
payloads and PCM go out as return values. Audio is 8 kHz mono int16 numpy arrays.

* Sending events: `schedule_digits()` turns a digit string into the complete list of packets
  (when, what, marker, which RTP timestamp); `DtmfEventSender` hands them out as a 20 ms clock
  advances.
* Receiving events: `DtmfEventReceiver` reports each press once, on its first packet, however
  many updates, end packets and retransmissions follow and whichever of them are lost.
* Sending tones: `dtmf_tone()` / `dtmf_tones()`.
* Detecting tones: `InbandDtmfDetector`, a Goertzel-style filter bank (computed as one small
  matrix product per batch of windows) with the classic validity checks, plus a frequency check
  from the phase advance between overlapping windows, which is what lets it tell a DTMF tone
  from a music note a few per cent away.
"""

from __future__ import annotations

import cmath
import logging
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "COLUMN_FREQUENCIES",
    "DIGITS",
    "EVENT_RATE",
    "ROW_FREQUENCIES",
    "DtmfDigit",
    "DtmfError",
    "DtmfEventReceiver",
    "DtmfEventSender",
    "DtmfSource",
    "InbandDtmfDetector",
    "ScheduledPacket",
    "TelephoneEvent",
    "decode_event",
    "digit_to_event",
    "dtmf_tone",
    "dtmf_tones",
    "encode_event",
    "event_to_digit",
    "schedule_digits",
]

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]
DtmfSource = Literal["rfc4733", "inband", "info"]

# RFC 4733 section 3.2: events 0-15 are the keys, in this order.
DIGITS: Final = "0123456789*#ABCD"
EVENT_RATE: Final = 8000  # telephone-event clock rate unless the SDP says otherwise
DEFAULT_VOLUME: Final = 10  # -10 dBm0, a typical key-press level
END_REPEATS: Final = 3  # RFC 4733 2.5.1.4: the final packet is sent three times

_PAYLOAD = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF
_TS_MASK = 0xFFFFFFFF
_TS_HALF = 0x80000000


class DtmfError(ValueError):
    """A malformed telephone-event payload or DTMF body, or an impossible DTMF request."""


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """One key press, however it arrived.

    `at` is the `now` passed with the input that completed the detection; `duration_ms` is
    known only when the press was already over when reported (an RFC 4733 end packet seen first,
    a SIP INFO with a Duration), else None.
    """

    digit: str
    source: DtmfSource
    at: float
    duration_ms: int | None = None


def digit_to_event(digit: str) -> int:
    """RFC 4733 event code of a key: 0-9, * = 10, # = 11, A-D = 12-15 (a-d accepted too)."""
    if len(digit) != 1 or digit.upper() not in DIGITS:
        raise DtmfError(f"invalid DTMF digit {digit!r}: expected one of 0-9 * # A-D")
    return DIGITS.index(digit.upper())


def event_to_digit(event: int) -> str:
    """The key of an RFC 4733 event code 0-15; other events (flash, modem tones) are not keys."""
    if not 0 <= event < len(DIGITS):
        raise DtmfError(f"telephone-event {event} is not a DTMF key (keys are events 0-15)")
    return DIGITS[event]


# --- RFC 4733 payloads ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload: event code, E bit, volume (0 to -63 dBm0), duration.

    `duration` is in timestamp units (samples at 8 kHz) since the event's RTP timestamp.
    """

    event: int
    end: bool
    volume: int
    duration: int


def encode_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4-byte payload: event(8) | E(1) R(1) volume(6) | duration(16); R is sent as 0."""
    if not 0 <= event <= 0xFF:
        raise DtmfError(f"telephone-event code must be 0-255, got {event}")
    if not 0 <= volume <= 63:
        raise DtmfError(f"telephone-event volume must be 0-63, got {volume}")
    if not 0 <= duration <= _MAX_DURATION:
        raise DtmfError(f"telephone-event duration must be 0-65535, got {duration}")
    return _PAYLOAD.pack(event, (0x80 if end else 0) | volume, duration)


def decode_event(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """Parse the first 4 bytes of a telephone-event payload.

    Bytes after the first event block are ignored rather than refused: standard senders never
    put them there (several events in one packet go through RFC 2198 redundancy, a different
    payload type), and a receiver that drops the whole key press over them helps nobody.
    """
    if len(payload) < _PAYLOAD.size:
        raise DtmfError(f"telephone-event payload too short: {len(payload)} bytes, need 4")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


# --- sending events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduledPacket:
    """One telephone-event packet to send.

    `offset_ms`: when, counted from the start of the schedule. `timestamp_offset`: the event's
    RTP timestamp in samples from the start of the schedule; every packet of an event carries
    the same one (RFC 4733 2.5.1.2), so add it to the stream timestamp taken when sending began.
    `new_event` (the first packet of a press) is when a sender that takes RTP timestamps from the
    wall clock picks the event's timestamp; `marker` is set on exactly those packets.
    """

    offset_ms: int
    payload: bytes
    marker: bool
    timestamp_offset: int
    new_event: bool
    end: bool
    digit: str


def schedule_digits(
    digits: str,
    *,
    tone_ms: int = 100,
    pause_ms: int = 100,
    interval_ms: int = 20,
    volume: int = DEFAULT_VOLUME,
    clock_rate: int = EVENT_RATE,
) -> tuple[ScheduledPacket, ...]:
    """Every packet that sends `digits` as RFC 4733 events, in sending order.

    Each press starts `tone_ms + pause_ms` after the previous one. Its first packet goes out at
    once with the marker bit and a duration of one interval; one more packet per interval
    follows, its duration growing by an interval, up to the packet that carries the E bit and
    the full `tone_ms`. That end packet is sent three times, one interval apart, all three with
    the same duration; a repeat that would fall after the next press starts is sent together
    with that press's first packet instead (only with pauses shorter than two intervals).
    """
    events = [digit_to_event(digit) for digit in digits]
    if interval_ms < 1:
        raise DtmfError(f"DTMF packet interval must be at least 1 ms, got {interval_ms}")
    if pause_ms < 0:
        raise DtmfError(f"DTMF pause must not be negative, got {pause_ms} ms")
    if clock_rate < 1:
        raise DtmfError(f"telephone-event clock rate must be positive, got {clock_rate}")
    tone_samples = tone_ms * clock_rate // 1000
    if tone_ms < 1 or tone_samples > _MAX_DURATION:
        raise DtmfError(
            f"DTMF tone duration must be 1-{_MAX_DURATION * 1000 // clock_rate} ms, "
            f"got {tone_ms} ms"
        )
    if not 0 <= volume <= 63:
        raise DtmfError(f"telephone-event volume must be 0-63, got {volume}")
    updates = -(-tone_ms // interval_ms)  # packets per press before the repeats
    step = tone_ms + pause_ms
    packets: list[ScheduledPacket] = []
    for index, (digit, event) in enumerate(zip(digits.upper(), events, strict=True)):
        start = index * step
        next_start = start + step if index + 1 < len(events) else None
        timestamp = start * clock_rate // 1000
        for update in range(updates):
            end = update == updates - 1
            elapsed = tone_ms if end else (update + 1) * interval_ms
            packets.append(
                ScheduledPacket(
                    offset_ms=start + update * interval_ms,
                    payload=encode_event(event, end, volume, elapsed * clock_rate // 1000),
                    marker=update == 0,
                    timestamp_offset=timestamp,
                    new_event=update == 0,
                    end=end,
                    digit=digit,
                )
            )
        final = packets[-1]
        for repeat in range(1, END_REPEATS):
            offset = final.offset_ms + repeat * interval_ms
            if next_start is not None:
                offset = min(offset, next_start)
            packets.append(
                ScheduledPacket(offset, final.payload, False, timestamp, False, True, digit)
            )
    return tuple(packets)


class DtmfEventSender:
    """Hands out a `schedule_digits()` schedule as time passes.

    Drive it from the 20 ms media clock: on each tick call `next_packets(elapsed_ms)` with the
    time since sending began and send what it returns, in order. A late tick returns several
    packets at once; sending them together is harmless, since their durations only grow.
    """

    def __init__(
        self,
        digits: str,
        *,
        tone_ms: int = 100,
        pause_ms: int = 100,
        interval_ms: int = 20,
        volume: int = DEFAULT_VOLUME,
        clock_rate: int = EVENT_RATE,
    ) -> None:
        self.packets = schedule_digits(
            digits,
            tone_ms=tone_ms,
            pause_ms=pause_ms,
            interval_ms=interval_ms,
            volume=volume,
            clock_rate=clock_rate,
        )
        self._next = 0

    def next_packets(self, elapsed_ms: float) -> list[ScheduledPacket]:
        """The packets due by `elapsed_ms` that have not been handed out yet."""
        start = self._next
        while self._next < len(self.packets) and self.packets[self._next].offset_ms <= elapsed_ms:
            self._next += 1
        return list(self.packets[start : self._next])

    @property
    def done(self) -> bool:
        return self._next >= len(self.packets)

    @property
    def last_offset_ms(self) -> int:
        """When the final packet is due: how long the whole sending takes."""
        return self.packets[-1].offset_ms if self.packets else 0


# --- receiving events ---------------------------------------------------------------------


class DtmfEventReceiver:
    """Turns the telephone-event packets of one inbound RTP stream into key presses.

    A press is identified by its RTP timestamp (with its event code, for senders that reuse a
    timestamp), so it is reported on the first of its packets that arrives, marker or not, and
    never again: updates, the three end packets and duplicates all carry the same timestamp.
    Two refinements:

    * a packet whose timestamp is older than the newest press (by less than `stale_after_s`)
      is a late straggler of a press already handled or lost; reporting it would put digits out
      of order. A timestamp far older means the sender restarted its stream, so it is new.
    * an event longer than the 16-bit duration field (8.2 s at 8 kHz) is continued by the
      sender as a new segment: same code, timestamp about 65535 later, no marker, and no E bit
      on the previous segment (RFC 4733 2.5.1.3). That is the same press, not a new one.

    Malformed payloads are counted in `malformed` and skipped, and events that are not keys
    (flash, fax tones) are ignored: one bad packet must not break the call's DTMF handling.
    Call `reset()` when the stream's SSRC changes.
    """

    _RECENT = 32

    def __init__(self, *, clock_rate: int = EVENT_RATE, stale_after_s: float = 60.0) -> None:
        self.clock_rate = clock_rate
        self.malformed = 0
        self._stale = int(stale_after_s * clock_rate)
        self._recent: deque[tuple[int, int]] = deque(maxlen=self._RECENT)
        self._newest_ts: int | None = None
        self._newest_event = -1
        self._newest_ended = False

    def reset(self) -> None:
        self._recent.clear()
        self._newest_ts = None
        self._newest_event = -1
        self._newest_ended = False

    def feed(
        self, rtp_timestamp: int, payload: bytes | bytearray | memoryview, marker: bool, now: float
    ) -> list[DtmfDigit]:
        """Handle one telephone-event packet; returns the press it starts, if any."""
        try:
            event = decode_event(payload)
        except DtmfError as exc:
            self.malformed += 1
            log.debug("ignoring telephone-event packet: %s", exc)
            return []
        if event.event >= len(DIGITS):
            return []
        timestamp = rtp_timestamp & _TS_MASK
        key = (timestamp, event.event)
        if key in self._recent:
            if timestamp == self._newest_ts and event.event == self._newest_event:
                self._newest_ended = self._newest_ended or event.end
            return []
        if self._newest_ts is not None:
            ahead = (timestamp - self._newest_ts) & _TS_MASK
            if ahead >= _TS_HALF and (_TS_MASK + 1 - ahead) <= self._stale:
                log.debug("ignoring stale telephone-event %d at %d", event.event, timestamp)
                return []
            if self._continues_newest(event, marker, ahead):
                self._newest(key, event)
                return []
        self._newest(key, event)
        duration = event.duration * 1000 // self.clock_rate if event.end else None
        return [DtmfDigit(DIGITS[event.event], "rfc4733", now, duration)]

    def _continues_newest(self, event: TelephoneEvent, marker: bool, ahead: int) -> bool:
        """Whether this is the next segment of a press longer than the duration field."""
        slack = self.clock_rate  # a second either way: senders split early or late
        return (
            not marker
            and not self._newest_ended
            and event.event == self._newest_event
            and _MAX_DURATION - slack <= ahead <= _MAX_DURATION + slack
        )

    def _newest(self, key: tuple[int, int], event: TelephoneEvent) -> None:
        self._recent.append(key)
        self._newest_ts = key[0]
        self._newest_event = event.event
        self._newest_ended = event.end


# --- tones --------------------------------------------------------------------------------

RATE: Final = 8000
ROW_FREQUENCIES: Final = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")  # rows x columns
_FULL_SCALE = 32768.0


def _frequencies(digit: str) -> tuple[float, float]:
    key = DIGITS[digit_to_event(digit)]
    for row, keys in enumerate(_KEYPAD):
        if key in keys:
            return ROW_FREQUENCIES[row], COLUMN_FREQUENCIES[keys.index(key)]
    raise AssertionError(key)  # pragma: no cover - every key is on the keypad


def dtmf_tone(digit: str, duration_s: float, rate: int = RATE, level_dbfs: float = -8.0) -> Pcm:
    """The key's two sine tones, each at `level_dbfs` (peak relative to full scale).

    The default -8 dBFS per tone leaves the sum 2 dB below clipping, loud enough for any
    detector yet not distorted; levels above -6 dBFS would clip and are refused.
    """
    if level_dbfs > -6.0:
        raise DtmfError(f"DTMF tone level must be at most -6 dBFS per tone, got {level_dbfs}")
    if duration_s < 0:
        raise DtmfError(f"DTMF tone duration must not be negative, got {duration_s} s")
    low, high = _frequencies(digit)
    amplitude = _FULL_SCALE * 10.0 ** (level_dbfs / 20.0)
    t = np.arange(round(duration_s * rate)) / rate
    wave = amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    pcm: Pcm = np.clip(np.round(wave), -32768, 32767).astype(np.int16)
    return pcm


def dtmf_tones(
    digits: str,
    *,
    tone_ms: int = 100,
    pause_ms: int = 100,
    rate: int = RATE,
    level_dbfs: float = -8.0,
) -> Pcm:
    """`digits` as in-band audio: each tone followed by silence, except after the last."""
    silence = np.zeros(round(pause_ms * rate / 1000), dtype=np.int16)
    parts: list[Pcm] = []
    for index, digit in enumerate(digits):
        if index:
            parts.append(silence)
        parts.append(dtmf_tone(digit, tone_ms / 1000, rate, level_dbfs))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


# --- detecting tones ----------------------------------------------------------------------

_WINDOW = 105  # 13.1 ms: neighbouring row tones fall near the first null of each other's bin
_HOP = 40  # 5 ms: a 160-sample frame is exactly four windows
# Measured on tones through G.711 at random alignments: tones of 40 ms or more are always
# reported (except in a stream's first 10 ms, which has no earlier windows), 25 ms never; gaps
# of 35 ms or more always separate two presses of one key, 25 ms never, and neither does a
# 20 ms dropout in the middle of a tone.
_HITS_TO_REPORT = 5  # windows in a row showing the key (each also needs the tone 2 windows back)
_MISSES_TO_REARM = 8  # windows in a row without a key before the same key counts again
_NORMAL_TWIST = 10.0 ** (8.0 / 10.0)  # low group may be up to 8 dB louder than the high group
_REVERSE_TWIST = 10.0 ** (4.0 / 10.0)  # high group may be up to 4 dB louder than the low group
_PEAK_RATIO = 10.0 ** (8.0 / 10.0)  # each tone 8 dB above the runner-up of its group
_TONE_SHARE = 0.8  # the two tones carry at least 80% of the window's energy
_FREQUENCY_TOLERANCE = 0.013  # +-1.3%: 1500 Hz (1477 + 1.6%) is not column 3
_LAG = 2  # the frequency check compares a window with the one two hops earlier


def _readonly(array: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    array.flags.writeable = False
    return array


_OMEGA = _readonly(2 * np.pi * np.array(ROW_FREQUENCIES + COLUMN_FREQUENCIES) / RATE)
# One matrix gives all eight bins of a window: columns 0-7 the cosine parts, 8-15 the sine parts.
_BASIS = _readonly(
    np.hstack(
        (np.cos(np.outer(np.arange(_WINDOW), _OMEGA)), np.sin(np.outer(np.arange(_WINDOW), _OMEGA)))
    )
)
# A tone at exactly a bin's frequency turns that bin's phase by omega*lag*hop from a window to
# the one `_LAG` windows later. Why two windows apart rather than one: the other tone's sidelobe
# bends each window's phase by up to ~0.05 rad; over twice the distance that error costs half
# as much frequency accuracy, while tones up to 50 Hz off still turn by less than half a turn.
_ADVANCE: Final = tuple(complex(np.exp(-1j * omega * _LAG * _HOP)) for omega in _OMEGA)
_MAX_PHASE_ERROR: Final = tuple(
    float(_FREQUENCY_TOLERANCE * omega * _LAG * _HOP) for omega in _OMEGA
)
_KEY_EVENTS: Final = tuple(tuple(digit_to_event(key) for key in keys) for keys in _KEYPAD)
_STARTS = np.arange(64)[:, np.newaxis] * _HOP + np.arange(_WINDOW)  # sample indices per window
_STARTS.flags.writeable = False


class InbandDtmfDetector:
    """Finds key presses in 8 kHz PCM fed in chunks of any size.

    The signal is cut into 105-sample windows every 40 samples; each window measures the eight
    DTMF frequencies (a single-bin DFT, what Goertzel computes, done for all windows of a chunk
    as one matrix product). A window shows a key when the strongest row and column tones are
    loud enough (`min_level_dbfs`, peak per tone), within the twist limits, 8 dB above the other
    tones of their group, together at least 80% of the window's energy (speech, music and noise
    spread theirs), and at the right frequency within 1.3%, measured by how far each tone's
    phase turned over the last two hops. A key is reported once it shows in 5 windows in a
    row (about 40 ms of tone), and the same key again only after 8 windows without any key
    (a gap of about 35 ms); a different key is reported as soon as it is stable.

    Cost: the numpy part is a few calls per chunk whatever its size; the checks then run on
    plain floats per window, and most windows of speech or silence fail the first of them.
    """

    def __init__(self, *, min_level_dbfs: float = -40.0) -> None:
        amplitude = _FULL_SCALE * 10.0 ** (min_level_dbfs / 20.0)
        self._min_energy = amplitude * amplitude * _WINDOW / 2  # a sine's energy in one window
        self._pending = np.zeros(0, dtype=np.float64)
        # the bins (8 cosine then 8 sine sums) of the two windows before the next one
        self._history: deque[list[float]] = deque(maxlen=_LAG)
        self._candidate = -1
        self._hits = 0
        self._misses = _MISSES_TO_REARM
        self._reported = -1

    def feed(self, pcm: Pcm, now: float) -> list[DtmfDigit]:
        """Detect in the next `pcm` samples (int16, 8 kHz, mono); returns presses completed."""
        samples = np.concatenate((self._pending, np.asarray(pcm, dtype=np.float64).ravel()))
        count = (len(samples) - _WINDOW) // _HOP + 1 if len(samples) >= _WINDOW else 0
        if count <= 0:
            self._pending = samples
            return []
        if count <= len(_STARTS):
            windows = samples[_STARTS[:count]]
        else:
            windows = sliding_window_view(samples, _WINDOW)[: (count - 1) * _HOP + 1 : _HOP]
        self._pending = samples[count * _HOP :]
        components = windows @ _BASIS
        squares = components * components
        # |bin|^2 * 2/N: the energy a sine at the bin's frequency has in the window
        energies = (squares[:, :8] + squares[:, 8:]) * (2.0 / _WINDOW)
        totals = np.einsum("ij,ij->i", windows, windows)
        found: list[DtmfDigit] = []
        for bins, energy, total in zip(
            components.tolist(), energies.tolist(), totals.tolist(), strict=True
        ):
            event = self._classify(bins, energy, total)
            self._history.append(bins)
            if self._step(event):
                found.append(DtmfDigit(DIGITS[event], "inband", now))
        return found

    def _classify(self, bins: list[float], energy: list[float], total: float) -> int:
        """The key event one window shows, or -1.

        `bins` are the window's 8 cosine then 8 sine sums, `energy` the 8 bin energies,
        `total` the window's whole energy.
        """
        rows, columns = energy[:4], energy[4:]
        low, high = max(rows), max(columns)
        if (
            low < self._min_energy
            or high < self._min_energy
            or low + high < _TONE_SHARE * total
            or low > high * _NORMAL_TWIST
            or high > low * _REVERSE_TWIST
        ):
            return -1
        row, column = rows.index(low), columns.index(high)
        if sorted(rows)[-2] * _PEAK_RATIO > low or sorted(columns)[-2] * _PEAK_RATIO > high:
            return -1
        if len(self._history) < _LAG:
            return -1
        # The frequency check needs the tone in the earlier window too: without it, that
        # bin's phase is noise.
        previous = self._history[0]
        for k in (row, column + 4):
            turn = (
                complex(bins[k], -bins[k + 8])
                * complex(previous[k], previous[k + 8])  # conjugate of the previous bin
                * _ADVANCE[k]
            )
            if abs(turn) * (2.0 / _WINDOW) < self._min_energy / 2:
                return -1
            if abs(cmath.phase(turn)) > _MAX_PHASE_ERROR[k]:
                return -1
        return _KEY_EVENTS[row][column]

    def _step(self, event: int) -> bool:
        """Advance the debouncing state by one window; True when `event` is a new press."""
        if event < 0:
            self._candidate, self._hits = -1, 0
            self._misses += 1
            if self._misses >= _MISSES_TO_REARM:
                self._reported = -1
            return False
        self._misses = 0
        if event == self._candidate:
            self._hits += 1
        else:
            self._candidate, self._hits = event, 1
        if self._hits >= _HITS_TO_REPORT and event != self._reported:
            self._reported = event
            return True
        return False
