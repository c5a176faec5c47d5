"""The PBX's outgoing RTP stream toward one phone, sans-I/O.

A phone must see one continuous stream from the PBX for the whole call: one SSRC, sequence
numbers that go up by one, timestamps that follow the wall clock. Yet what feeds that stream
changes: the relay from the other leg, a player (music on hold, prompts), the relay from a
different leg after a transfer. Each feeder is a *writer*; when the writer changes, `handover()`
tells the new writer which sequence number and timestamp to continue with, so the phone sees at
most a marker bit instead of a new stream or a jump its jitter buffer would choke on.
"""

from __future__ import annotations

__all__ = ["RtpOutputStream"]

_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFFFFFF


class RtpOutputStream:
    __slots__ = (
        "_frame_samples",
        "clock_rate",
        "sent_at",
        "sequence",
        "ssrc",
        "timestamp",
        "writer",
    )

    def __init__(
        self,
        ssrc: int,
        sequence: int,
        timestamp: int,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
    ) -> None:
        """`sequence` and `timestamp` are those of the first packet (random, per RFC 3550)."""
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.sequence = (sequence - 1) & _SEQ_MASK  # the newest sequence number sent
        self.timestamp = timestamp & _TS_MASK  # the newest timestamp sent ...
        self.sent_at: float | None = None  # ... and when; None: nothing sent yet
        self.writer: object | None = None
        self._frame_samples = frame_samples  # writer's last frame size; the default is 20 ms

    def handover(self, writer: object, now: float) -> tuple[int, int]:
        """Make `writer` the stream's feeder; return the (sequence, timestamp) it starts with.

        The timestamp advances by the wall-clock time since the newest packet, and by at least
        one frame so that the new writer's first packet never overlaps the previous one.
        """
        self.writer = writer
        sequence = (self.sequence + 1) & _SEQ_MASK
        if self.sent_at is None:
            return sequence, self.timestamp
        elapsed = round((now - self.sent_at) * self.clock_rate)
        return sequence, (self.timestamp + max(elapsed, self._frame_samples)) & _TS_MASK

    def advance(self, sequence: int, timestamp: int, now: float) -> None:
        """Record a packet sent on the stream; older (reordered) values never move it back.

        `RelayDirection.relay` inlines this for every relayed packet: keep the two in step.
        """
        if (sequence - self.sequence) & _SEQ_MASK < 0x8000:
            self.sequence = sequence
        if (timestamp - self.timestamp) & _TS_MASK < 0x80000000:
            self.timestamp = timestamp
            self.sent_at = now

    def next_frame(self, writer: object, samples: int, now: float) -> tuple[int, int, bool]:
        """(sequence, timestamp, marker) for the next frame a generating writer sends.

        For writers that produce audio themselves (players, tone generators) rather than relay
        it: consecutive frames are spaced by the previous frame's length in samples, and the
        first frame after a handover carries the marker bit.
        """
        if writer is self.writer and self.sent_at is not None:
            sequence = (self.sequence + 1) & _SEQ_MASK
            timestamp = (self.timestamp + self._frame_samples) & _TS_MASK
            marker = False
        else:
            sequence, timestamp = self.handover(writer, now)
            marker = True
        self._frame_samples = samples
        self.advance(sequence, timestamp, now)
        return sequence, timestamp, marker
