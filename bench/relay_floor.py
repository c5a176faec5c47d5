"""The floor under any Python RTP relay on this machine: a bare forwarder's CPU per packet.

The media goal is stated in calls per core, but a relayed packet costs a recvfrom and a
sendto whatever the relay does, and on a virtual machine's loopback those two system calls
alone can cost more than the Python around them. This measures, at the same packet rates
media_calls.py uses (N calls = N*100 packets/s through the relay: 50/s each way), forwarders
that do nothing but move datagrams between UDP sockets, each in a process of its own: `epoll`
(a bare epoll loop, the shape pypbx's relay worker had), shapes of I/O that might be cheaper
(VARIANTS, `--relays`), and `uvloop` (a datagram protocol on uvloop, the shape of the event
loop's relay). Their CPU per packet, split into user and system time, says how many calls per
core any Python relay could reach here; pypbx's own figure from media_calls.py compares with
it (same machine, same day). Also per forwarder: its context switches per second, how idle
the machine was meanwhile (a busy machine batches wake-ups by itself and flatters the shapes
that do not), and the delay a packet took from sender to sink.

Found so far (2 vCPU VM shared with other work, 200 and 400 calls): holding off wake-ups for
1 ms (`hold1`) costs 12-14 µs a packet where `epoll` costs 15-19 (28-33 under `chrt -f 10`,
i.e. woken at once for every packet, as on an idle machine); 2 ms gains little more; and
recvfrom_into, edge triggering and recvmmsg/sendmmsg through ctypes gain nothing. The relay
worker held like `hold1` for a while (19-21 µs a packet against 22-29 without), but at 400
calls it gained nothing, as a busy loop batches by itself, and the millisecond it adds on
each pass showed in the soak's p99 added jitter (3-minute soaks, 5 calls/s: 3.8 ms with it,
3.2 without): taken out again, as it saved CPU only where CPU is not short.
Connected sockets (`connected`: recv + send, no address either way) cost 1-2 µs a packet
less than `epoll`; the worker uses them since session 8, with an inline shortcut for plain
audio: 16-18 µs a packet at 500 calls (560-614 calls per core) against 19-22 before.
`worker@HEAD` compares the worker of this tree with the committed one, `worker@REV` with
that of any revision.

    .venv/bin/python bench/relay_floor.py [--calls 200,400] [--seconds 8] [--relays epoll,hold1]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from benchlib.common import Table, emit

HEADER = bytes([0x80, 0]) + bytes(10)  # a 20 ms u-law RTP packet: header, send time, silence
STAMP = struct.Struct("!d")
SILENCE = b"\xff" * (160 - STAMP.size)
# How long the `holdN` shapes let packets queue once they come thick (see _epoll).
HOLDS = {"hold1": 0.001, "hold2": 0.002}
VARIANTS = {
    "epoll": "one recvfrom + sendto per readiness, 128 events a poll (the relay worker's shape)",
    "into": "epoll, recvfrom_into a preallocated buffer + sendto of a memoryview",
    "edge": "epoll edge-triggered, each ready socket drained until EAGAIN",
    "hold1": "epoll, wake-ups at most one per 1 ms once packets come thick",
    "hold2": "as hold1 with 2 ms",
    "hold1+into": "hold1 and into together",
    "connected": "epoll, each socket connected to its source: recv + send, no address per packet",
    "mmsg": "hold1 with recvmmsg/sendmmsg (8 slots) through ctypes instead of recvfrom/sendto",
    "uvloop": "a datagram protocol on uvloop (the shape of the event loop's relay)",
    "worker": "pypbx's RelayWorker of this tree, a bridge per call (the floor plus pypbx)",
    "worker@HEAD": "the same with relay_worker.py as committed (git HEAD; or worker@REV)",
}


def forwarder(kind: str, streams: int, seconds: float, sink_port: int) -> None:
    """Child process: forward every datagram arriving on its sockets to the sink port.

    The ports are the kernel's choice (reported on stdout), not from above the ephemeral
    range like other benches': this runs without the bench lock, beside soaks that hold it
    and their ports, and a port the kernel hands out is one nothing else has bound.
    """
    socks = []
    for _ in range(streams):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    sink = ("127.0.0.1", sink_port)
    print("ready", *(sock.getsockname()[1] for sock in socks), flush=True)
    end = time.monotonic() + seconds
    if kind.startswith("worker"):
        _worker(kind, socks, sink, seconds)
    elif kind == "uvloop":
        _uvloop(socks, sink, seconds)
    elif kind == "mmsg":
        _mmsg(socks, sink, end)
    else:
        _epoll(kind, socks, sink, end)


def _epoll(kind: str, socks: list[socket.socket], sink: tuple[str, int], end: float) -> None:
    """The epoll shapes: `epoll` as the worker was, and one change each (see VARIANTS)."""
    hold = HOLDS.get(kind.split("+")[0], 0.0)
    into = kind.endswith("+into") or kind == "into"
    edge = kind == "edge"
    connected = kind == "connected"
    if connected:
        for sock in socks:
            sock.connect(sink)  # the sink is every stream's source too
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN | (select.EPOLLET if edge else 0))
    buffer = bytearray(2048)
    view = memoryview(buffer)
    maxevents = 128
    poll = poller.poll
    clock = time.monotonic
    idle = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    waiter = select.epoll()
    waiter.register(idle.fileno(), select.EPOLLIN)
    wait = waiter.poll
    woken = 0.0
    while True:
        events = poll(0.1, maxevents)
        now = clock()
        if now >= end:
            break
        for fd, _ in events:
            sock = by_fd[fd]
            if edge:
                while True:  # edge-triggered: no second wake-up for what is left, so drain
                    try:
                        data, _addr = sock.recvfrom(2048)
                    except OSError:
                        break
                    sock.sendto(data, sink)
            elif connected:
                try:
                    data = sock.recv(2048)
                except OSError:
                    continue
                sock.send(data)
            elif into:
                try:
                    size, _addr = sock.recvfrom_into(buffer)
                except OSError:
                    continue
                sock.sendto(view[:size], sink)
            else:
                try:
                    data, _addr = sock.recvfrom(2048)
                except OSError:
                    continue
                sock.sendto(data, sink)
        if hold and now - woken < hold and len(events) < maxevents:
            # Woken again within the hold: packets are coming thick, so let more of them
            # queue up and take them with one wake-up and one epoll_wait. The worker waits
            # on its control socket meanwhile; an idle socket stands in for it here.
            rest = woken + hold - clock()
            if rest > 0:
                wait(rest, 1)
            woken = clock()
        else:
            woken = now


def _worker(kind: str, socks: list[socket.socket], sink: tuple[str, int], seconds: float) -> None:
    """pypbx's relay worker in its own loop, its bridges handed over directly, not by pypbx."""
    import threading

    from benchlib.relay_workers import hand_over, worker_module

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    worker = worker_module(kind).RelayWorker(theirs)
    # both phones of every call are the sink: the latches match where packets come from
    hand_over(worker, socks, [sink] * len(socks))

    def pypbx() -> None:
        """Read what the worker reports (stats), then close: the worker exits."""
        ours.settimeout(0.2)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                ours.recv(65536)
        ours.close()

    threading.Thread(target=pypbx, daemon=True).start()
    worker.run()


def _uvloop(socks: list[socket.socket], sink: tuple[str, int], seconds: float) -> None:
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


def _mmsg(socks: list[socket.socket], sink: tuple[str, int], end: float) -> None:
    """recvmmsg/sendmmsg through ctypes, on a 1 ms hold so a socket may have several queued."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    class Iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    class MsgHdr(ctypes.Structure):
        _fields_ = [
            ("name", ctypes.c_void_p),
            ("namelen", ctypes.c_uint32),
            ("iov", ctypes.POINTER(Iovec)),
            ("iovlen", ctypes.c_size_t),
            ("control", ctypes.c_void_p),
            ("controllen", ctypes.c_size_t),
            ("flags", ctypes.c_int),
        ]

    class MMsgHdr(ctypes.Structure):
        _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]

    slots = 8
    buffers = [ctypes.create_string_buffer(2048) for _ in range(slots)]
    iovs = (Iovec * slots)()
    names = [ctypes.create_string_buffer(16) for _ in range(slots)]
    inbound = (MMsgHdr * slots)()
    outbound = (MMsgHdr * slots)()
    sink_name = ctypes.create_string_buffer(
        struct.pack("=HH4s8x", socket.AF_INET, socket.htons(sink[1]), socket.inet_aton(sink[0])),
        16,
    )
    for i in range(slots):
        iovs[i].base = ctypes.cast(buffers[i], ctypes.c_void_p)
        iovs[i].len = 2048
        inbound[i].hdr.name = ctypes.cast(names[i], ctypes.c_void_p)
        inbound[i].hdr.iov = ctypes.pointer(iovs[i])
        inbound[i].hdr.iovlen = 1
    out_iovs = (Iovec * slots)()
    for i in range(slots):
        out_iovs[i].base = iovs[i].base
        outbound[i].hdr.name = ctypes.cast(sink_name, ctypes.c_void_p)
        outbound[i].hdr.namelen = 16
        outbound[i].hdr.iov = ctypes.pointer(out_iovs[i])
        outbound[i].hdr.iovlen = 1
    recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    dontwait = socket.MSG_DONTWAIT
    poller = select.epoll()
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    clock = time.monotonic
    woken = 0.0
    hold = HOLDS["hold1"]
    while True:
        events = poller.poll(0.1, 1024)
        now = clock()
        if now >= end:
            break
        for fd, _ in events:
            for i in range(slots):
                inbound[i].hdr.namelen = 16
            count = recvmmsg(fd, inbound, slots, dontwait, None)
            if count <= 0:
                continue
            for i in range(count):
                out_iovs[i].len = inbound[i].len
            sendmmsg(fd, outbound, count, 0)
        if now - woken < hold:
            time.sleep(max(0.0, woken + hold - clock()))
            woken = clock()
        else:
            woken = now


def measure(kind: str, calls: int, seconds: float) -> dict[str, float]:
    streams = 2 * calls  # both directions of each call cross the relay
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    sink_port = str(sink.getsockname()[1])
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(streams), str(seconds + 3), sink_port],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ready = child.stdout.readline().split()
    if not ready or ready[0] != "ready":
        raise RuntimeError(f"the {kind} forwarder did not start")
    ports = [int(port) for port in ready[1:]]
    sender = sink  # one "phone" socket: the worker's latches see packets come from the sink
    period = 0.02 / streams
    sent = received = 0
    stat = Path(f"/proc/{child.pid}/stat")
    status = Path(f"/proc/{child.pid}/status")

    def switches() -> int:
        return sum(
            int(line.split()[1])
            for line in status.read_text().splitlines()
            if "ctxt_switches:" in line
        )

    schedstat = Path(f"/proc/{child.pid}/schedstat")

    def cpu() -> tuple[float, float]:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def run_time() -> float:
        """Time on a CPU in ns, not clock ticks: precise where user and system are not."""
        return int(schedstat.read_text().split()[0]) / 1e9

    start = time.monotonic()
    due = start
    measured_from = start + 1.0  # a second of warm-up
    before = (0.0, 0.0)
    switched = 0
    ran = idle = 0.0
    delays: list[float] = []
    index = 0
    while True:
        now = time.monotonic()
        if before == (0.0, 0.0) and now >= measured_from:
            before = cpu()
            ran = run_time()
            switched = switches()
            idle = _machine_idle()
            sent = received = 0
            delays.clear()
        if now >= measured_from + seconds:
            break
        while due <= now:
            try:
                packet = HEADER + STAMP.pack(time.monotonic()) + SILENCE
                sender.sendto(packet, ("127.0.0.1", ports[index]))
                sent += 1
            except BlockingIOError:
                pass
            index = (index + 1) % streams
            due += period
        while True:
            try:
                data = sink.recv(2048)
                received += 1
                delays.append(time.monotonic() - STAMP.unpack_from(data, 12)[0])
            except BlockingIOError:
                break
        time.sleep(max(0.0, min(due - time.monotonic(), 0.001)))
    after = cpu()
    ran = run_time() - ran
    switched = switches() - switched
    child.wait()
    user, system = after[0] - before[0], after[1] - before[1]
    idle = _machine_idle() - idle
    # per packet that made it through: under loss, those dropped cost the forwarder little
    packets = max(received, 1)
    per_packet = (user + system) / packets
    return {
        "calls": calls,
        "packets": sent,
        "lost": max(0, sent - received),
        "user_us": round(1e6 * user / packets, 2),
        "sys_us": round(1e6 * system / packets, 2),
        "run_us": round(1e6 * ran / packets, 2),
        "cpu_share": round((user + system) / seconds, 3),
        "switches_per_s": round(switched / seconds),
        "machine_idle": round(idle / seconds / (os.cpu_count() or 1), 3),
        "delay_p50_ms": round(1e3 * _percentile(delays, 0.5), 2),
        "delay_p99_ms": round(1e3 * _percentile(delays, 0.99), 2),
        "calls_per_core": round(1 / (100 * per_packet)) if per_packet else 0,
    }


def _machine_idle() -> float:
    """Seconds all CPUs were idle since boot: a busy machine makes every figure here worse."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        forwarder(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="200,400", help="calls per step (100 packets/s each)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--relays",
        default="epoll,hold1,worker,worker@HEAD,uvloop",
        help="forwarders to measure, in turn at each step (any of: "
        + "; ".join(f"{name}: {what}" for name, what in VARIANTS.items())
        + ")",
    )
    parser.add_argument("--rounds", type=int, default=1, help="measure each forwarder this often")
    args = parser.parse_args()
    table = Table(
        [
            ("calls", 5),
            ("relay", 10),
            ("packets", 8),
            ("lost", 6),
            ("user µs", 7),
            ("sys µs", 7),
            ("run µs", 7),
            ("cpu %", 5),
            ("cs/s", 6),
            ("idle %", 6),
            ("p50 ms", 6),
            ("p99 ms", 6),
            ("calls/core", 10),
        ]
    )
    kinds = args.relays.split(",")
    unknown = {kind for kind in kinds if kind not in VARIANTS and not kind.startswith("worker@")}
    if unknown:
        parser.error(f"unknown forwarders: {', '.join(sorted(unknown))}")
    for calls in (int(n) for n in args.calls.split(",")):
        for kind in kinds * args.rounds:
            fig = measure(kind, calls, args.seconds)
            emit({"bench": "relay_floor", "relay": kind, **fig})
            table.row(
                calls,
                kind,
                fig["packets"],
                fig["lost"],
                fig["user_us"],
                fig["sys_us"],
                fig["run_us"],
                f"{100 * fig['cpu_share']:.0f}",
                fig["switches_per_s"],
                f"{100 * fig['machine_idle']:.0f}",
                fig["delay_p50_ms"],
                fig["delay_p99_ms"],
                fig["calls_per_core"],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
