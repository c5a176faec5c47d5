"""Free loopback ports for peers, safe under pytest-xdist.

Peers need fixed port numbers written into their configs (and RTP needs whole ranges), so
"bind to port 0" is not enough. Each xdist worker gets its own slice of 10000-32000, below
the kernel's ephemeral range, and every handed-out port is checked bindable for both UDP
and TCP. A random start inside the slice keeps two concurrent test runs apart as well;
PYPBX_TEST_SLICE_OFFSET shifts every worker's slice, so two runs that must not share ports
at all (developers testing side by side on one machine) can be given disjoint slices.
"""

from __future__ import annotations

import os
import random
import socket

_LOW = 10000
_HIGH = 32000
_MAX_WORKERS = 16


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in worker if ch.isdigit())
    offset = int(os.environ.get("PYPBX_TEST_SLICE_OFFSET", "0") or 0)
    return (int(digits or 0) + offset) % _MAX_WORKERS


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if both a UDP and a TCP socket can bind `port` on `host` right now."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


class PortAllocator:
    """Hands out never-repeating blocks of contiguous free ports from this worker's slice."""

    def __init__(self, worker: int | None = None) -> None:
        index = _worker_index() if worker is None else worker
        size = (_HIGH - _LOW) // _MAX_WORKERS // 2 * 2
        self._lo = _LOW + index * size
        self._hi = self._lo + size
        self._next = self._lo + random.randrange(0, size // 2) // 2 * 2

    def block(self, count: int = 1) -> int:
        """First port of `count` contiguous free ports; the start is even (RTP likes that)."""
        for _ in range(2):
            while self._next + count <= self._hi:
                start = self._next
                self._next += count + (count % 2)
                if all(port_is_free(p) for p in range(start, start + count)):
                    return start
            self._next = self._lo  # wrap once; earlier blocks may be free again
        raise RuntimeError(f"no {count} contiguous free ports in {self._lo}-{self._hi}")

    def port(self) -> int:
        """One free port (UDP and TCP)."""
        return self.block(1)
