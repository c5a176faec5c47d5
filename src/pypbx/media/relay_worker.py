"""The relay worker: a process of its own that moves the RTP of plain bridged calls.

Why a process: the SIP loop stalls for milliseconds at a time when calls are set up or the
HTTP API is busy, and every packet waiting behind it arrives late; here nothing but packets
is waiting. And why not asyncio: a bare epoll loop that reads exactly one datagram per
readiness spends about half the CPU per packet the event loop does.

pypbx (`relay_offload`) hands over a bridge's two RTP sockets with the state its own relay
had reached; the packet logic is the very same `RelayDirection` and `Latch` pypbx uses, fed
by `_Leg`, which stands in for `RtpEndpoint`. The worker exits when pypbx's end of the
control socket closes, so it never outlives pypbx.

    python -m pypbx.media.relay_worker CONTROL_FD
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from pypbx.media.bridge import CodecSpec, RelayDirection
from pypbx.media.latch import Latch
from pypbx.media.relay_wire import (
    LegSetup,
    LegState,
    WireError,
    decode,
    encode_control,
    encode_packet,
)
from pypbx.media.stream import RtpOutputStream

if TYPE_CHECKING:
    from pypbx.media.endpoint import RtpEndpoint

log = logging.getLogger("pypbx.media.relay_worker")

STATS_PERIOD = 1.0  # how often pypbx hears counters and last-packet times (its RTP watchdog)
STATS_CHUNK = 100  # bridges per stats message: each message must fit the socket buffer
_BATCH = 128  # events per poll (about 3 ms of packets at most)
_MAX_DATAGRAM = 2048
_MAX_CONTROL = 65536


class _Leg:
    """One handed-over RTP socket, with the attributes `RelayDirection.relay` uses."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "direction",
        "forward",
        "latch",
        "output",
        "packets_in",
        "packets_out",
        "payload_types",
        "port",
        "received_at",
        "recvfrom",
        "rejected",
        "relay",
        "sendto",
        "sock",
        "target",
        "unsent",
    )

    def __init__(self, sock: socket.socket, setup: LegSetup) -> None:
        self.sock = sock
        # bound once: the packet path would look them up for every packet otherwise
        self.recvfrom = sock.recvfrom
        self.sendto = sock.sendto
        self.relay: Callable[[Any, bytes], None] | None = None
        self.port = setup.port
        self.latch = Latch(setup.quiet_period)
        self.latch.accept(setup.source, setup.seen_at)
        self.target = setup.source
        self.received_at = setup.seen_at
        types = setup.payload_types
        self.payload_types = None if types is None else frozenset(types)
        self.forward = frozenset(setup.forward)
        ssrc, sequence, timestamp, sent_at, _ = setup.output
        self.output = RtpOutputStream(ssrc, (sequence + 1) & 0xFFFF, timestamp)
        self.output.sent_at = sent_at
        self.direction: RelayDirection | None = None
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.rejected = self.unsent = 0

    def send(self, packet: bytes | bytearray) -> None:
        try:
            self.sendto(packet, self.target)
        except OSError:
            self.unsent += 1
            return
        self.packets_out += 1
        self.bytes_out += len(packet)

    def reclaim(self) -> None:
        """`RelayDirection.paused` asks the source for its packets back: nothing to do here."""

    def state(self, *, fed: bool = False) -> LegState:
        """Counters, latch and streams; `fed`: this leg's stream is still the relay's."""
        output = self.output
        direction = self.direction
        assert direction is not None
        source = self.latch.source
        assert source is not None
        return LegState(
            self.packets_in,
            self.bytes_in,
            self.packets_out,
            self.bytes_out,
            self.rejected,
            self.unsent,
            self.received_at,
            source,
            (output.ssrc, output.sequence, output.timestamp, output.sent_at, fed),
            direction.export_state(),
        )


def _codec(setup: LegSetup) -> CodecSpec:
    payload_type, name, event = setup.codec
    return CodecSpec(payload_type, name, event)


class RelayWorker:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.poller = select.epoll()
        self.legs: dict[int, _Leg] = {}  # by file descriptor
        self.bridges: dict[int, tuple[_Leg, _Leg]] = {}  # by the id pypbx gave
        self._reported: dict[int, int] = {}  # bridge id -> packets_in at the last stats

    def run(self) -> None:
        control_fd = self.control.fileno()
        self.poller.register(control_fd, select.EPOLLIN)
        self._send(encode_control({"op": "ready"}))
        poll = self.poller.poll
        legs = self.legs
        clock = time.monotonic
        next_stats = clock() + STATS_PERIOD
        while True:
            # Short batches, control first: pypbx waits (blocked) for the answer to a
            # hand-back, so it must never queue behind more than a batch of packets.
            events = poll(STATS_PERIOD, _BATCH)
            now = clock()
            if any(fd == control_fd for fd, _ in events):
                for _ in range(_BATCH):
                    handled = self._control()
                    if handled is None:
                        break
                    if not handled:
                        return
            for fd, _ in events:
                leg = legs.get(fd)
                if leg is not None:
                    self._receive(leg, now)
            if now >= next_stats:
                next_stats = now + STATS_PERIOD
                self._send_stats()

    def _receive(self, leg: _Leg, now: float) -> None:
        # The hot path, the twin of RtpEndpoint._rtp_received: keep the two in step.
        try:
            data, addr = leg.recvfrom(_MAX_DATAGRAM)
        except OSError:  # nothing there after all, or an ICMP error from the far phone
            return
        if len(data) < 12 or data[0] >> 6 != 2:
            leg.rejected += 1
            return
        payload_type = data[1] & 0x7F
        if 72 <= payload_type <= 76 or (
            leg.payload_types is not None and payload_type not in leg.payload_types
        ):
            leg.rejected += 1  # RTCP multiplexed late: pypbx offloads no leg that muxes
            return
        latch = leg.latch
        if addr == latch.source:
            latch.seen_at = now
        elif latch.accept(addr, now):
            leg.target = addr
        else:
            leg.rejected += 1
            return
        leg.received_at = now
        leg.packets_in += 1
        leg.bytes_in += len(data)
        if payload_type in leg.forward:
            self._send(encode_packet(leg.port, data))
        relay = leg.relay
        if relay is not None:
            relay(leg, data)

    def _control(self) -> bool | None:
        """Handle one control message: False when pypbx has gone, None when none waits."""
        try:
            message, fds, _, _ = socket.recv_fds(self.control, _MAX_CONTROL, 2)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            log.error("relay worker: control socket failed, exiting: %s", exc)
            return False
        if not message:
            return False  # pypbx closed its end
        try:
            control, _ = decode(message)
            if control is None:
                raise WireError("pypbx sends no packets")
            op = control["op"]
            if op == "add":
                self._add(int(control["id"]), control["legs"], fds)
                fds = []
            elif op == "remove":
                self._remove(int(control["id"]))
            else:
                raise WireError(f"unknown op {op!r}")
        except (WireError, KeyError, TypeError, ValueError) as exc:
            log.error("relay worker: bad control message: %s", exc)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _add(self, bridge_id: int, legs: Any, fds: list[int]) -> None:
        if not isinstance(legs, list) or len(legs) != 2 or len(fds) != 2:
            raise WireError("add needs two legs and two sockets")
        if bridge_id in self.bridges:
            raise WireError(f"bridge {bridge_id} is here already")
        setups = [LegSetup.from_json(leg) for leg in legs]
        socks = [socket.socket(fileno=fd) for fd in fds]
        a, b = (_Leg(sock, setup) for sock, setup in zip(socks, setups, strict=True))
        a_codec, b_codec = _codec(setups[0]), _codec(setups[1])
        a.direction = RelayDirection(_as_end(a), _as_end(b), a_codec, b_codec)
        b.direction = RelayDirection(_as_end(b), _as_end(a), b_codec, a_codec)
        a.direction.import_state(setups[0].direction)
        b.direction.import_state(setups[1].direction)
        a.relay, b.relay = a.direction.relay, b.direction.relay
        # Streams the relay was feeding stay fed by it: no handover, so no marker or jump.
        if setups[1].output[4]:
            b.output.writer = a.direction
        if setups[0].output[4]:
            a.output.writer = b.direction
        for leg in (a, b):
            leg.sock.setblocking(False)
            self.legs[leg.sock.fileno()] = leg
            self.poller.register(leg.sock.fileno(), select.EPOLLIN)
        self.bridges[bridge_id] = (a, b)

    def _send(self, message: bytes) -> None:
        try:
            self.control.send(message)
        except (BlockingIOError, InterruptedError):
            log.warning("relay worker: control socket full, a message to pypbx was dropped")
        except OSError:
            pass  # pypbx is gone; the next read of the control socket ends the worker

    def _remove(self, bridge_id: int) -> None:
        legs = self.bridges.pop(bridge_id, None)
        self._reported.pop(bridge_id, None)
        if legs is None:
            self._send(encode_control({"op": "removed", "id": bridge_id, "legs": None}))
            return
        for leg in legs:
            self.poller.unregister(leg.sock.fileno())
            del self.legs[leg.sock.fileno()]
        a, b = legs
        states = [
            a.state(fed=a.output.writer is b.direction).to_json(),
            b.state(fed=b.output.writer is a.direction).to_json(),
        ]
        for leg in legs:
            leg.sock.close()  # our duplicate only: pypbx keeps its own descriptor
        self._send(encode_control({"op": "removed", "id": bridge_id, "legs": states}))

    def _send_stats(self) -> None:
        changed: dict[str, list[Any]] = {}
        for bridge_id, legs in self.bridges.items():
            total = legs[0].packets_in + legs[1].packets_in
            if self._reported.get(bridge_id) != total:
                self._reported[bridge_id] = total
                changed[str(bridge_id)] = [leg.state().to_json() for leg in legs]
                if len(changed) == STATS_CHUNK:
                    self._send(encode_control({"op": "stats", "bridges": changed}))
                    changed = {}
        if changed:
            self._send(encode_control({"op": "stats", "bridges": changed}))


def _as_end(leg: _Leg) -> RtpEndpoint:
    """`RelayDirection` is typed for endpoints; a `_Leg` has every attribute it uses."""
    return cast("RtpEndpoint", leg)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    # Signals to the process group (Ctrl-C, a service manager's SIGTERM) are pypbx's to act
    # on: it takes its calls back and hangs up, and its exit closes our control socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=int(argv[1]))
    control.setblocking(False)
    RelayWorker(control).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
