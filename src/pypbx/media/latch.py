"""Symmetric-RTP latching, sans-I/O: which source address a leg's media is accepted from.

Phones behind NAT announce a private address in SDP, so the PBX answers to wherever their packets
really come from (RFC 4961, "comedia"). Latching onto *any* sender at any time would let a third
party hijack or inject into a call by spraying the port range, so once latched, other sources are
refused until the latched one has been silent for `quiet_period` seconds or the owner unlocks the
latch because new SDP arrived.
"""

from __future__ import annotations

import logging

__all__ = ["Address", "Latch"]

_log = logging.getLogger(__name__)

Address = tuple[str, int] | tuple[str, int, int, int]


class Latch:
    __slots__ = ("_unlocked", "quiet_period", "seen_at", "source")

    def __init__(self, quiet_period: float) -> None:
        self.quiet_period = quiet_period
        self.source: Address | None = None  # the latched source, None until the first packet
        self.seen_at = 0.0  # when the latched source last sent
        self._unlocked = True

    def accept(self, source: Address, now: float) -> bool:
        """Whether a packet from `source` is taken; latches (or re-latches) onto it if allowed."""
        if source == self.source:
            self.seen_at = now
            self._unlocked = False  # the peer confirmed its address: lock again
            return True
        if self.source is not None and not self._unlocked:
            if now - self.seen_at < self.quiet_period:
                return False
            _log.info("re-latching from silent %s to %s", self.source, source)
        self.source = source
        self.seen_at = now
        self._unlocked = False
        return True

    def unlock(self) -> None:
        """Let the next packet from any source re-latch, keeping the current one until then.

        Called when new SDP arrives: the phone may have moved, but until it sends, the old
        source is still the best guess of where it is.
        """
        self._unlocked = True

    def reset(self) -> None:
        """Forget the latched source (the peer's SDP address changed)."""
        self.source = None
        self._unlocked = True
