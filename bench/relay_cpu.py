"""The relay worker's CPU per packet in a closed loop: one thread, real sockets, no timing.

Why: `relay_floor.py` moves packets at the real rate between processes, which is the truth
about a core but only on a quiet machine; on a busy one its figures swing by half. Here
nothing waits on the scheduler: each leg socket of N bridges has a few packets queued by
its own phone socket, then the relay's per-batch function runs over every descriptor (one
datagram each, as level-triggered epoll reports them) until all are moved, and only that
is timed, in the thread's CPU time, the kernel's send and receive included. What is left
out: epoll itself, wake-ups and context switches (relay_floor has them).

Relays: `floor` (recvfrom + sendto and nothing else, the least any Python relay pays),
`connected` (the same on connected sockets: recv + send), `worker` (pypbx's RelayWorker of
this tree, bridges handed over as pypbx would) and `worker@REV` (relay_worker.py of a git
revision, for a before/after). Rounds alternate between the relays, so a busy spell hits
them alike; the median of the rounds is the figure.

    .venv/bin/python bench/relay_cpu.py [--calls 400] [--rounds 40]
        [--relays floor,connected,worker,worker@HEAD]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
import types
from collections.abc import Callable

from benchlib.common import Table, emit
from benchlib.relay_workers import hand_over, worker_module

QUEUED = 4  # packets queued per leg and round: well inside a socket's receive buffer
Pump = Callable[[list[tuple[int, int]], float], None]


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


class Relay:
    """One relay under test with its 2N leg sockets and 2N phones (phone i talks to leg i)."""

    def __init__(self, kind: str, calls: int) -> None:
        self.kind = kind
        legs = [_udp() for _ in range(2 * calls)]
        self.phones = [_udp() for _ in range(2 * calls)]
        self.targets = [leg.getsockname() for leg in legs]
        self.events = [(leg.fileno(), 1) for leg in legs]
        self.sequence = 0
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control.setblocking(False)
        theirs.setblocking(False)
        self.keep = [theirs]
        if kind.startswith("worker"):
            self.pump = self._worker(worker_module(kind), theirs, legs)
        else:
            self.pump = self._forwarder(legs, connected=kind == "connected")

    def _worker(
        self, module: types.ModuleType, control: socket.socket, legs: list[socket.socket]
    ) -> Pump:
        worker = module.RelayWorker(control)
        hand_over(worker, legs, [phone.getsockname() for phone in self.phones])
        pump: Pump | None = getattr(worker, "_pump", None)
        if pump is not None:
            return pump

        def receive_each(events: list[tuple[int, int]], now: float) -> None:
            # revisions before the shortcut: the run loop's body, one method call per packet
            by_fd = worker.legs
            for fd, _ in events:
                leg = by_fd.get(fd)
                if leg is not None:
                    worker._receive(leg, now)

        return receive_each

    def _forwarder(self, legs: list[socket.socket], *, connected: bool) -> Pump:
        # each leg forwards to the other leg's phone, as a bridge does
        sinks = [self.phones[index ^ 1].getsockname() for index in range(len(legs))]
        self.keep.extend(legs)
        if connected:
            for index, leg in enumerate(legs):
                leg.connect(self.phones[index].getsockname())
            # a connected socket sends to its own phone: good enough for the floor's cost
            by_fd_c = {leg.fileno(): leg for leg in legs}

            def forward_connected(events: list[tuple[int, int]], now: float) -> None:
                for fd, _ in events:
                    leg = by_fd_c[fd]
                    try:
                        data = leg.recv(2048)
                    except OSError:
                        continue
                    leg.send(data)

            return forward_connected
        by_fd = {leg.fileno(): (leg, sink) for leg, sink in zip(legs, sinks, strict=True)}

        def forward(events: list[tuple[int, int]], now: float) -> None:
            for fd, _ in events:
                leg, sink = by_fd[fd]
                try:
                    data, _ = leg.recvfrom(2048)
                except OSError:
                    continue
                leg.sendto(data, sink)

        return forward

    def queue(self) -> None:
        """Each phone sends QUEUED packets of one stream to its leg."""
        silence = b"\xff" * 160
        for _ in range(QUEUED):
            self.sequence += 1
            sequence, timestamp = self.sequence & 0xFFFF, (160 * self.sequence) & 0xFFFFFFFF
            for index, (phone, target) in enumerate(zip(self.phones, self.targets, strict=True)):
                header = bytes([0x80, 0]) + sequence.to_bytes(2, "big")
                header += timestamp.to_bytes(4, "big") + (1000 + index).to_bytes(4, "big")
                phone.sendto(header + silence, target)

    def drain(self) -> int:
        """Packets the phones received; what the worker told pypbx is read and dropped."""
        count = 0
        for phone in self.phones:
            while True:
                try:
                    phone.recv(2048)
                except BlockingIOError:
                    break
                count += 1
        try:
            while self.control.recv(65536):
                pass
        except BlockingIOError:
            pass
        return count

    def round(self) -> tuple[float, int]:
        """(thread CPU seconds, packets relayed) for one round of QUEUED packets per leg."""
        self.queue()
        started = time.thread_time()
        for _ in range(QUEUED):
            self.pump(self.events, time.monotonic())
        spent = time.thread_time() - started
        return spent, self.drain()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="400", help="bridges (2 legs each), comma-separated")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--relays", default="floor,connected,worker,worker@HEAD")
    args = parser.parse_args()
    kinds = args.relays.split(",")
    unknown = [k for k in kinds if k not in ("floor", "connected", "worker")]
    if any(not k.startswith("worker@") for k in unknown):
        parser.error(f"unknown relays: {', '.join(unknown)}")
    columns = [("calls", 5), ("relay", 16), ("packets", 8), ("lost", 6), ("µs/packet", 9)]
    table = Table([*columns, ("best µs", 8), ("calls/core", 10)])
    for calls in (int(n) for n in args.calls.split(",")):
        relays = [Relay(kind, calls) for kind in kinds]
        for relay in relays:  # warm-up: latches, first-packet handovers, caches
            relay.round()
        per_packet: dict[str, list[float]] = {kind: [] for kind in kinds}
        moved = dict.fromkeys(kinds, 0)
        expected = QUEUED * 2 * calls
        for _ in range(args.rounds):
            for relay in relays:
                spent, count = relay.round()
                per_packet[relay.kind].append(spent / max(count, 1))
                moved[relay.kind] += count
        for kind in kinds:
            median = statistics.median(per_packet[kind])
            lost = expected * args.rounds - moved[kind]
            figures = {
                "bench": "relay_cpu",
                "relay": kind,
                "calls": calls,
                "packets": moved[kind],
                "lost": lost,
                "us_per_packet": round(1e6 * median, 2),
                "best_us": round(1e6 * min(per_packet[kind]), 2),
                "calls_per_core": round(1 / (100 * median)),  # 100 packets/s per call
            }
            emit(figures)
            table.row(
                calls,
                kind,
                moved[kind],
                lost,
                figures["us_per_packet"],
                figures["best_us"],
                figures["calls_per_core"],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
