"""RTP port bookkeeping, sans-I/O: which even ports of the configured range are handed out.

RTP takes the even port and RTCP the odd one above it (RFC 3550 section 11). Released ports go to
the back of the queue rather than being reused at once, so late packets of a finished call do not
land on the next call that happens to get the same port.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PortAllocator", "PortsExhaustedError"]


class PortsExhaustedError(RuntimeError):
    """Every RTP port of the range is in use (or could not be bound)."""


class PortAllocator:
    def __init__(self, low: int, high: int) -> None:
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid RTP port range {low}-{high}")
        first = low + (low & 1)
        ports = range(first, high, 2)  # port + 1 (RTCP) must stay <= high
        if not ports:
            raise ValueError(f"RTP port range {low}-{high} holds no even/odd port pair")
        self.low = low
        self.high = high
        self._free: deque[int] = deque(ports)
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many RTP/RTCP pairs the range holds."""
        return len(self._free) + len(self._used)

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        """The next free even port; its odd neighbour is reserved for RTCP along with it."""
        if not self._free:
            raise PortsExhaustedError(f"no free RTP port in {self.low}-{self.high}")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port not in self._used:
            raise ValueError(f"RTP port {port} is not allocated")
        self._used.remove(port)
        self._free.append(port)
