"""The relay worker: a process of its own that moves the RTP of plain bridged calls.

Why a process: the SIP loop stalls for milliseconds at a time when calls are set up or the
HTTP API is busy, and every packet waiting behind it arrives late; here nothing but packets
is waiting. And why not asyncio: a bare epoll loop that reads exactly one datagram per
readiness spends about half the CPU per packet the event loop does.

pypbx (`relay_offload`) hands over a bridge's two RTP sockets with the state its own relay
had reached; the packet logic is the very same `RelayDirection` and `Latch` pypbx uses, fed
by `_Leg`, which stands in for `RtpEndpoint`. The worker exits when pypbx's end of the
control socket closes, so it never outlives pypbx.

Two shortcuts, because at a few hundred calls the Python per packet is what limits a core:
- A leg's socket is connected to its latched phone while the phone sends (`udp_peer`): the
  kernel then filters other sources and neither side of a packet carries an address. When
  the phone has been silent for the latch's quiet period, the socket is disconnected, so a
  new source can latch as `Latch` allows.
- The plain audio packet (no padding, extension or CSRCs) from a connected phone, in a
  direction that `RelayDirection.steady` calls settled, is rewritten inline in `_pump`;
  every other packet takes the long way (`_take`, `RelayDirection.relay`).

    python -m pypbx.media.relay_worker CONTROL_FD
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
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
from pypbx.media.udp_peer import disconnect

if TYPE_CHECKING:
    from pypbx.media.endpoint import RtpEndpoint

log = logging.getLogger("pypbx.media.relay_worker")

STATS_PERIOD = 1.0  # how often pypbx hears counters and last-packet times (its RTP watchdog)
# Bridges per stats message, and per pass of the loop: at 500 bridges, the whole report in
# one go held the packets up for 7-9 ms each second (the relay's p99 delay); a chunk this
# size takes well under a millisecond, and every message fits the socket buffer.
STATS_CHUNK = 25
QUIET_CHECK_PERIOD = 0.1  # how often silent phones' sockets are disconnected (re-latching)
_BATCH = 128  # events per poll (about 3 ms of packets at most)
_MAX_DATAGRAM = 2048
_MAX_CONTROL = 65536
# Bytes 2-11 of the RTP header (sequence, timestamp, SSRC), and 1-11 (marker and payload
# type first): as in `bridge`, whose rewrite the shortcut in `_pump` repeats.
_SEQ_TS_SSRC = struct.Struct("!HII")
_MPT_SEQ_TS_SSRC = struct.Struct("!BHII")
_NO_SHORTCUT = -1  # `_Leg.steady_type` while the shortcut is off: no payload type matches


class _Leg:
    """One handed-over RTP socket, with the attributes `RelayDirection.relay` uses."""

    __slots__ = (
        "bound",
        "bytes_in",
        "bytes_out",
        "can_connect",
        "connected",
        "direction",
        "forward",
        "latch",
        "output",
        "packets_in",
        "packets_out",
        "payload_types",
        "peer",
        "port",
        "received_at",
        "recv",
        "recvfrom",
        "rejected",
        "relay",
        "send_connected",
        "sendto",
        "sock",
        "steady_sequence",
        "steady_ssrc",
        "steady_table",
        "steady_timestamp",
        "steady_type",
        "steady_type_out",
        "target",
        "unsent",
    )

    def __init__(self, sock: socket.socket, setup: LegSetup) -> None:
        self.sock = sock
        # bound once: the packet path would look them up for every packet otherwise
        self.recvfrom = sock.recvfrom
        self.sendto = sock.sendto
        self.recv = sock.recv
        self.send_connected = sock.send
        self.bound = sock.getsockname()  # before any connect: `disconnect` restores it
        self.connected = False  # to `target`: see `connect`
        self.can_connect = True  # False once a connect failed: never tried again
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
        self.peer: _Leg | None = None  # the other leg of the bridge: this one's sink
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.rejected = self.unsent = 0
        # The shortcut's copy of `direction.steady()` (see `arm`): off until armed.
        self.steady_type = _NO_SHORTCUT
        self.steady_type_out = self.steady_ssrc = self.steady_sequence = 0
        self.steady_timestamp = 0
        self.steady_table: bytes | None = None

    def send(self, packet: bytes | bytearray) -> None:
        try:
            if self.connected:
                self.send_connected(packet)
            else:
                self.sendto(packet, self.target)
        except OSError:
            self.unsent += 1
            return
        self.packets_out += 1
        self.bytes_out += len(packet)

    def connect(self) -> None:
        """Take packets from the latched source only, and send to it without an address."""
        try:
            self.sock.connect(self.target)
        except OSError as exc:
            self.can_connect = False
            log.warning(
                "relay worker: port %d cannot connect to %s: %s", self.port, self.target, exc
            )
            return
        self.connected = True

    def disconnect(self) -> None:
        """Take packets from anyone again (the phone fell silent: it may have moved)."""
        self.connected = False
        self.latch.seen_at = self.received_at  # the shortcut leaves the latch's time behind
        try:
            disconnect(self.sock, self.bound)
        except OSError as exc:
            log.error("relay worker: port %d cannot disconnect: %s", self.port, exc)

    def arm(self) -> None:
        """Turn the shortcut on or off as `direction.steady()` says, after the long way.

        Only the long way changes what `steady()` returns (a new SSRC, a handover), and it
        calls this after every packet it relays; in between, the copy stays true.
        """
        assert self.direction is not None
        steady = self.direction.steady()
        if (
            steady is None
            or 72 <= steady.audio_in <= 76  # read as RTCP: rejected the long way
            or steady.audio_in in self.forward  # pypbx wants to see these: the long way
            or (self.payload_types is not None and steady.audio_in not in self.payload_types)
        ):
            self.steady_type = _NO_SHORTCUT
            return
        self.steady_type = steady.audio_in
        self.steady_type_out = steady.audio_out
        self.steady_ssrc = steady.ssrc
        self.steady_sequence = steady.sequence_offset
        self.steady_timestamp = steady.timestamp_offset
        self.steady_table = steady.table

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
        self._stats_due: list[int] = []  # bridges the current report has still to look at

    def run(self) -> None:
        control_fd = self.control.fileno()
        self.poller.register(control_fd, select.EPOLLIN)
        self._send(encode_control({"op": "ready"}))
        poll = self.poller.poll
        clock = time.monotonic
        next_stats = next_quiet_check = clock() + QUIET_CHECK_PERIOD
        while True:
            # Short batches, control first: pypbx waits (blocked) for the answer to a
            # hand-back, so it must never queue behind more than a batch of packets.
            events = poll(QUIET_CHECK_PERIOD, _BATCH)
            now = clock()
            if any(fd == control_fd for fd, _ in events):
                for _ in range(_BATCH):
                    handled = self._control()
                    if handled is None:
                        break
                    if not handled:
                        return
            self._pump(events, now)
            if now >= next_quiet_check:
                next_quiet_check = now + QUIET_CHECK_PERIOD
                self._disconnect_quiet(now)
            if now >= next_stats:
                next_stats = now + STATS_PERIOD
                self._stats_due = list(self.bridges)
            if self._stats_due:
                self._send_stats()

    def _pump(self, events: list[tuple[int, int]], now: float) -> None:
        """Relay a packet from each ready socket: the hot path.

        The shortcut is `RelayDirection.relay` for a packet `_Leg.arm` vouches for, which
        is most of them: the same bytes out (tests/unit/media/test_relay_worker_shortcut.py
        compares the two), with none of the checks that cannot fail for it.
        """
        legs = self.legs
        unpack = _SEQ_TS_SSRC.unpack_from
        pack = _MPT_SEQ_TS_SSRC.pack_into
        for fd, _ in events:
            leg = legs.get(fd)
            if leg is None:
                continue  # the control socket, or a leg removed in this batch
            if not leg.connected:
                try:
                    data, source = leg.recvfrom(_MAX_DATAGRAM)
                except OSError:  # nothing there after all
                    continue
                self._take(leg, data, source, now)
                continue
            try:
                data = leg.recv(_MAX_DATAGRAM)
            except OSError:  # nothing there after all, or an ICMP error from the far phone
                continue
            size = len(data)
            if size < 12 or data[0] != 0x80 or data[1] & 0x7F != leg.steady_type:
                self._take(leg, data, leg.target, now)
                continue
            sequence, timestamp, ssrc = unpack(data, 2)
            if ssrc != leg.steady_ssrc:
                self._take(leg, data, leg.target, now)
                continue
            leg.received_at = now
            leg.packets_in += 1
            leg.bytes_in += size
            sink = leg.peer
            assert sink is not None
            output = sink.output
            out_seq = (sequence + leg.steady_sequence) & 0xFFFF
            out_ts = (timestamp + leg.steady_timestamp) & 0xFFFFFFFF
            output.advance(out_seq, out_ts, now)
            table = leg.steady_table
            packet = bytearray(data if table is None else data[:12] + data[12:].translate(table))
            pack(packet, 1, (data[1] & 0x80) | leg.steady_type_out, out_seq, out_ts, output.ssrc)
            sink.send(packet)

    def _take(self, leg: _Leg, data: bytes, addr: Any, now: float) -> None:
        # The long way, the twin of RtpEndpoint._rtp_received: keep the two in step.
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
        if not leg.connected and leg.can_connect:
            leg.connect()  # the latched source sends: let the kernel keep others out
        if payload_type in leg.forward:
            self._send(encode_packet(leg.port, data))
        relay = leg.relay
        if relay is not None:
            relay(leg, data)
            leg.arm()

    def _disconnect_quiet(self, now: float) -> None:
        for leg in self.legs.values():
            if leg.connected and now - leg.received_at >= leg.latch.quiet_period:
                leg.disconnect()

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
        a.peer, b.peer = b, a
        # Streams the relay was feeding stay fed by it: no handover, so no marker or jump.
        if setups[1].output[4]:
            b.output.writer = a.direction
        if setups[0].output[4]:
            a.output.writer = b.direction
        for leg in (a, b):
            leg.sock.setblocking(False)
            leg.connect()  # pypbx hands over only bridges whose phones both send
            leg.arm()
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
            if leg.connected:
                leg.disconnect()  # pypbx reads this socket again: from anyone, as before
        a, b = legs
        states = [
            a.state(fed=a.output.writer is b.direction).to_json(),
            b.state(fed=b.output.writer is a.direction).to_json(),
        ]
        for leg in legs:
            leg.sock.close()  # our duplicate only: pypbx keeps its own descriptor
        self._send(encode_control({"op": "removed", "id": bridge_id, "legs": states}))

    def _send_stats(self) -> None:
        """Report the next STATS_CHUNK due bridges, those that moved packets since the last."""
        due = self._stats_due
        chunk = due[-STATS_CHUNK:]
        del due[-STATS_CHUNK:]
        changed: dict[str, list[Any]] = {}
        for bridge_id in chunk:
            legs = self.bridges.get(bridge_id)
            if legs is None:
                continue  # removed meanwhile: its final state went with the removal
            total = legs[0].packets_in + legs[1].packets_in
            if self._reported.get(bridge_id) != total:
                self._reported[bridge_id] = total
                changed[str(bridge_id)] = [leg.state().to_json() for leg in legs]
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
