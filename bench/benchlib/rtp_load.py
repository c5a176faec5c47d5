"""RTP load for media_calls: one G.711 stream per call, 20 ms packets, measured where it lands.

Run as a process of its own (`python bench/benchlib/rtp_load.py ...`) beside the SIPp that
sets the calls up. SIPp's caller logs, per answered call, the far RTP port from the 200's
SDP ("rtp PORT" lines of its -log_file); this process tails that log and starts a stream
towards each port as it appears. All streams leave from, and come back to, one local port
(the one the caller's SDP offered): the callee is SIPp with -rtp_echo, so every packet
crosses pypbx twice (caller leg -> callee leg, then back), and the echo is demultiplexed by
what the packet itself carries.

Each packet's payload starts with (stream, sequence, send time in ns) and is otherwise
u-law silence: pypbx relays G.711 payloads untouched when both legs use the same law, so
the stamp survives and loss and delay are measured here, at the receiving end, with no
help from pypbx's own counters. Sends are spread evenly over the 20 ms period (phones are
not synchronised) and scheduled on absolute times, so a late send does not shift the rest.

Protocol on stdout: "START" when the measuring window opens (every expected stream is
running, plus a settling time), "END" when it closes; the figures go to --out as JSON.
Soak mode (--duration, --stream-seconds): no waiting for a number of calls; each call's
stream runs for a fixed time from its answer and everything sent meanwhile is measured.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import select
import socket
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any

PTIME_NS = 20_000_000
PAYLOAD = 160  # 20 ms of 8 kHz G.711
_HEADER = struct.Struct("!BBHII")
_STAMP = struct.Struct("!IIQ")  # stream, sequence, send time (monotonic ns)
_FILL = b"\xff" * (PAYLOAD - _STAMP.size)  # u-law silence
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


class Stream:
    __slots__ = ("delays", "index", "received", "remote", "sent", "seq", "stop")

    def __init__(self, index: int, remote: tuple[str, int], stop: int) -> None:
        self.index = index
        self.remote = remote
        self.stop = stop  # monotonic ns after which it sends no more (0: until the end)
        self.seq = 0
        self.sent = 0  # packets sent inside the window
        self.received = 0  # of those, how many came back
        self.delays = array("q")  # round trip (ns) of each packet of the window that came back


def open_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option, size in ((_SO_RCVBUFFORCE, 8 << 20), (_SO_SNDBUFFORCE, 4 << 20)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:  # not root: the plain option, capped by net.core.*mem_max
            plain = socket.SO_RCVBUF if option == _SO_RCVBUFFORCE else socket.SO_SNDBUF
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def percentile_ns(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values.sort()
    return values[min(len(values) - 1, int(q / 100 * len(values)))] / 1e6


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sock = open_socket(args.port)
        self.rtcp = open_socket(args.port + 1)  # pypbx's RTCP lands here and is dropped
        self.streams: list[Stream] = []
        self.schedule: list[tuple[int, int]] = []  # (due ns, stream index)
        self.log_offset = 0
        self.window: tuple[int, int] | None = None
        self.lags = array("q")  # how late each window send left (ns), the generator's health
        self.errors = 0
        self.unknown = 0
        self.packet = bytearray(_HEADER.size + PAYLOAD)
        self.packet[_HEADER.size + _STAMP.size :] = _FILL

    def discover(self, now: int) -> None:
        """Streams for the ports SIPp logged since the last look."""
        try:
            with open(self.args.ports_log, "rb") as log:
                log.seek(self.log_offset)
                data = log.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.log_offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[-2] != "rtp" or not parts[-1].isdigit():
                continue
            # one line per answered call: a far port pypbx reuses later is a new call
            stop = now + int(self.args.stream_seconds * 1e9) if self.args.stream_seconds else 0
            stream = Stream(len(self.streams), ("127.0.0.1", int(parts[-1])), stop)
            self.streams.append(stream)
            # spread the streams' phases over the period, as unsynchronised phones would be
            phase = (stream.index * 7919 % 1000) * PTIME_NS // 1000
            heapq.heappush(self.schedule, (now + phase, stream.index))

    def send_due(self, now: int) -> None:
        window = self.window
        packet = self.packet
        while self.schedule and self.schedule[0][0] <= now:
            due, index = heapq.heappop(self.schedule)
            stream = self.streams[index]
            stream.seq += 1
            _HEADER.pack_into(
                packet, 0, 0x80, 0, stream.seq & 0xFFFF, stream.seq * 160 & 0xFFFFFFFF, index + 1
            )
            sent_at = time.monotonic_ns()
            _STAMP.pack_into(packet, _HEADER.size, index, stream.seq, sent_at)
            try:
                self.sock.sendto(packet, stream.remote)
            except (BlockingIOError, ConnectionRefusedError):
                self.errors += 1
            else:
                if window is not None and window[0] <= sent_at < window[1]:
                    stream.sent += 1
                    self.lags.append(sent_at - due)
            if not stream.stop or due + PTIME_NS < stream.stop:
                heapq.heappush(self.schedule, (due + PTIME_NS, index))

    def receive(self) -> None:
        window = self.window
        streams = self.streams
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:  # ICMP for an earlier send
                self.errors += 1
                continue
            now = time.monotonic_ns()
            if len(data) < _HEADER.size + _STAMP.size:
                self.unknown += 1
                continue
            start = _HEADER.size + 4 * (data[0] & 0x0F)
            if data[0] & 0x10:  # header extension
                start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
            index, _seq, sent_at = _STAMP.unpack_from(data, start)
            if index >= len(streams):
                self.unknown += 1
                continue
            if window is not None and window[0] <= sent_at < window[1]:
                stream = streams[index]
                stream.received += 1
                stream.delays.append(now - sent_at)

    def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic_ns()
        give_up = started + int(args.timeout * 1e9)
        next_look = started
        stop_at: int | None = None
        if args.duration:  # soak: calls come and go, everything sent is measured
            self.window = (started, started + int(args.duration * 1e9))
        while True:
            now = time.monotonic_ns()
            if (self.window is None or args.duration) and now >= next_look:
                self.discover(now)
                next_look = now + 50_000_000
                if self.window is None and (len(self.streams) >= args.expect or now >= give_up):
                    begin = now + int(args.settle * 1e9)
                    self.window = (begin, begin + int(args.window * 1e9))
            if self.window is not None:
                if stop_at is None and now >= self.window[0]:
                    stop_at = self.window[1]
                    print("START", flush=True)
                if stop_at is not None and now >= stop_at:
                    print("END", flush=True)
                    break
            self.send_due(now)
            due = self.schedule[0][0] if self.schedule else now + 10_000_000
            if self.window is None or args.duration:
                due = min(due, next_look)
            wait = max(0, due - now) / 1e9
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                self.receive()
        drain_until = time.monotonic_ns() + int(args.drain * 1e9)
        while time.monotonic_ns() < drain_until:
            if select.select([self.sock], [], [], 0.05)[0]:
                self.receive()
        return self.figures()

    def figures(self) -> dict[str, Any]:
        sent = sum(s.sent for s in self.streams)
        received = sum(s.received for s in self.streams)
        added: list[int] = []
        delays: list[int] = []
        for stream in self.streams:
            if stream.delays:
                floor = min(stream.delays)
                added.extend(d - floor for d in stream.delays)
                delays.extend(stream.delays)
        lags = list(self.lags)
        cpu = os.times()
        return {
            "streams": len(self.streams),
            "sent": sent,
            "received": received,
            "loss_pct": round(100 * (sent - received) / sent, 4) if sent else float("nan"),
            "rtt_p50_ms": round(percentile_ns(delays, 50), 3),
            "rtt_p99_ms": round(percentile_ns(delays, 99), 3),
            "jitter_p50_ms": round(percentile_ns(added, 50), 3),
            "jitter_p99_ms": round(percentile_ns(added, 99), 3),
            "jitter_max_ms": round(max(added) / 1e6, 3) if added else float("nan"),
            "send_lag_p99_ms": round(percentile_ns(lags, 99), 3),
            "send_errors": self.errors,
            "unknown_packets": self.unknown,
            "generator_cpu_s": round(cpu.user + cpu.system, 2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="local RTP port (even)")
    parser.add_argument("--ports-log", type=Path, required=True, help="SIPp log to tail")
    parser.add_argument("--expect", type=int, default=0, help="streams to wait for")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--drain", type=float, default=0.5, help="seconds to wait for echoes")
    parser.add_argument("--timeout", type=float, default=60.0, help="stop waiting for calls")
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="soak mode: measure everything for this long, streams starting as calls do",
    )
    parser.add_argument(
        "--stream-seconds", type=float, default=0.0, help="soak mode: each stream's length"
    )
    parser.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    args = parser.parse_args()
    figures = Load(args).run()
    args.out.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
