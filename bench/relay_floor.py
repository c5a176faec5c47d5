"""The floor under any Python RTP relay on this machine: a bare forwarder's CPU per packet.

The media goal is stated in calls per core, but a relayed packet costs a recvfrom and a
sendto whatever the relay does, and on a virtual machine's loopback those two system calls
alone can cost more than the Python around them. This measures, at the same packet rates
media_calls.py uses (N calls = N*100 packets/s through the relay: 50/s each way), two
forwarders that do nothing but move datagrams between UDP sockets, each in a process of its
own: `epoll` (a bare epoll loop, the shape of pypbx's relay worker) and `uvloop` (a datagram
protocol on uvloop, the shape of the event loop's relay). Their CPU per packet, split into
user and system time, says how many calls per core any Python relay could reach here; pypbx's
own figure from media_calls.py compares with it (same machine, same day).

    .venv/bin/python bench/relay_floor.py [--calls 200,400] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchlib.common import Table, emit

PACKET = bytes([0x80, 0]) + bytes(10) + b"\xff" * 160  # a 20 ms u-law RTP packet
BASE_PORT = 62000  # above the ephemeral range, like every bench port


def forwarder(kind: str, streams: int, seconds: float) -> None:
    """Child process: forward every datagram arriving on BASE_PORT+i to BASE_PORT-1."""
    socks = []
    for i in range(streams):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", BASE_PORT + i))
        sock.setblocking(False)
        socks.append(sock)
    sink = ("127.0.0.1", BASE_PORT - 1)
    print("ready", flush=True)
    if kind == "epoll":
        poller = select.epoll()
        by_fd = {s.fileno(): s for s in socks}
        for fd in by_fd:
            poller.register(fd, select.EPOLLIN)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for fd, _ in poller.poll(0.1, 128):
                sock = by_fd[fd]
                try:
                    data, _addr = sock.recvfrom(2048)
                except OSError:
                    continue
                sock.sendto(data, sink)
    else:
        import asyncio

        import uvloop

        class Forward(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(data, sink)  # type: ignore[attr-defined]

        async def run() -> None:
            loop = asyncio.get_running_loop()
            for sock in socks:
                await loop.create_datagram_endpoint(Forward, sock=sock)
            await asyncio.sleep(seconds)

        uvloop.run(run())


def measure(kind: str, calls: int, seconds: float) -> dict[str, float]:
    streams = 2 * calls  # both directions of each call cross the relay
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(streams), str(seconds + 3)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.readline()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", BASE_PORT - 1))
    sink.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    period = 0.02 / streams
    sent = received = 0
    stat = Path(f"/proc/{child.pid}/stat")

    def cpu() -> tuple[float, float]:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    start = time.monotonic()
    due = start
    measured_from = start + 1.0  # a second of warm-up
    before = (0.0, 0.0)
    index = 0
    while True:
        now = time.monotonic()
        if before == (0.0, 0.0) and now >= measured_from:
            before = cpu()
            sent = received = 0
        if now >= measured_from + seconds:
            break
        while due <= now:
            try:
                sender.sendto(PACKET, ("127.0.0.1", BASE_PORT + index))
                sent += 1
            except BlockingIOError:
                pass
            index = (index + 1) % streams
            due += period
        while True:
            try:
                sink.recv(2048)
                received += 1
            except BlockingIOError:
                break
        time.sleep(max(0.0, min(due - time.monotonic(), 0.001)))
    after = cpu()
    child.wait()
    user, system = after[0] - before[0], after[1] - before[1]
    packets = max(sent, 1)
    per_packet = (user + system) / packets
    return {
        "calls": calls,
        "packets": sent,
        "lost": max(0, sent - received),
        "user_us": round(1e6 * user / packets, 2),
        "sys_us": round(1e6 * system / packets, 2),
        "cpu_share": round((user + system) / seconds, 3),
        "calls_per_core": round(1 / (100 * per_packet)) if per_packet else 0,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        forwarder(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="200,400", help="calls per step (100 packets/s each)")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    table = Table(
        [
            ("calls", 5),
            ("relay", 6),
            ("packets", 8),
            ("lost", 6),
            ("user µs", 7),
            ("sys µs", 7),
            ("cpu %", 5),
            ("calls/core", 10),
        ]
    )
    for calls in (int(n) for n in args.calls.split(",")):
        for kind in ("epoll", "uvloop"):
            fig = measure(kind, calls, args.seconds)
            emit({"bench": "relay_floor", "relay": kind, **fig})
            table.row(
                calls,
                kind,
                fig["packets"],
                fig["lost"],
                fig["user_us"],
                fig["sys_us"],
                f"{100 * fig['cpu_share']:.0f}",
                fig["calls_per_core"],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
