"""The PBX's RTP sockets: one `RtpEndpoint` per call leg, all owned by a `MediaManager`.

The PBX anchors media: each leg talks RTP to a port of its own on the PBX, and a `Bridge` relays
between the two ports of a call. Because every leg terminates here, hold, playback, recording and
transfer only ever change what feeds or observes an endpoint, never the phone's view of it.

This is the asyncio layer: it owns the sockets, the receive path (validation, latching, counters,
taps) and hands each accepted packet to the single `on_packet` owner (usually a bridge direction).
The packet logic itself lives in the sans-I/O modules (`rtp`, `stream`, `latch`, `rtcp`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pypbx.media.bridge import Bridge, CodecSpec, RelayDirection
from pypbx.media.latch import Address, Latch
from pypbx.media.ports import PortAllocator, PortsExhaustedError
from pypbx.media.rtp import RTP_HEADER
from pypbx.media.stream import RtpOutputStream

if TYPE_CHECKING:
    from pypbx.media.relay_offload import RelayOffloader

__all__ = [
    "Bridge",
    "CodecSpec",
    "EndpointCounters",
    "MediaManager",
    "Offload",
    "PacketHandler",
    "PacketTap",
    "PortsExhaustedError",
    "RelayDirection",
    "RelayHandover",
    "RtpEndpoint",
]

_log = logging.getLogger(__name__)

PacketHandler = Callable[["RtpEndpoint", bytes], None]

_MAX_DATAGRAM = 2048  # RTP packets of G.711 are 172 bytes; anything larger is not ours
_DSCP_EF = 0xB8  # Expedited Forwarding, the usual marking for voice
_RTCP_QUIET_PERIOD = 15.0  # RTCP is sent every ~5 s: a shorter silence proves nothing


class Offload(Protocol):
    """A relay worker's hold on an endpoint's packets (`relay_offload.OffloadedBridge`)."""

    def reclaim(self) -> None: ...


class PacketTap(Protocol):
    """Observes an endpoint's packets without owning it (recorder, DTMF detector).

    `inbound` packets are as the phone sent them; outbound ones as the phone will get them.
    Called on the event loop for every packet: keep it cheap, hand heavy work elsewhere.
    """

    def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class RelayHandover:
    """An endpoint's steady state, for a relay worker to continue from."""

    source: Address
    seen_at: float
    quiet_period: float
    payload_types: tuple[int, ...] | None
    forward: tuple[int, ...]  # payload types the taps still need to see


@dataclass(slots=True)
class EndpointCounters:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    rtcp_in: int = 0
    rtcp_out: int = 0
    rejected: int = 0  # not RTP, unexpected payload type, or from a source other than the latched
    unsent: int = 0  # nowhere to send yet (no SDP address, nothing latched) or closed


class RtpEndpoint:
    """One RTP port (and the RTCP port above it) of the PBX, facing one phone."""

    def __init__(
        self,
        local_address: str,
        local_port: int,
        *,
        relatch_after: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local_address = local_address  # what to put in our SDP
        self.local_port = local_port
        self.on_packet: PacketHandler | None = None
        self.on_rtcp: PacketHandler | None = None
        self.counters = EndpointCounters()
        self.output = RtpOutputStream(
            ssrc=secrets.randbits(32), sequence=secrets.randbits(16), timestamp=secrets.randbits(32)
        )
        self.payload_map: dict[int, str] | None = None
        self.received_at = 0.0  # clock() when the packet being handled arrived
        self._clock = clock
        self._remote: tuple[str, int] | None = None
        self._payload_types: frozenset[int] | None = None
        self._latch = Latch(relatch_after)
        self._rtcp_latch = Latch(max(relatch_after, _RTCP_QUIET_PERIOD))
        self._target: Address | None = None  # where RTP goes: latched source, else SDP address
        self._rtcp_mux = False  # the phone sent RTCP on the RTP port (RFC 5761)
        # Taps as immutable tuples, rebuilt on change: the packet path loops over them with no
        # copy, and a tap may remove itself meanwhile. Most taps want one direction only.
        self._in_taps: tuple[PacketTap, ...] = ()
        self._out_taps: tuple[PacketTap, ...] = ()
        self._latched = False  # the latch has accepted a packet since it was last unlocked
        self._rtp_socket: socket.socket | None = None
        self._rtcp_socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False  # the RTP socket is watched by our loop (not handed elsewhere)
        # Set while a relay worker process moves this endpoint's packets (see relay_offload):
        # anything that changes what the endpoint does with them takes the packets back first.
        self.offload: Offload | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RtpEndpoint {self.local_address}:{self.local_port} -> {self._target}>"

    @property
    def remote(self) -> tuple[str, int] | None:
        """The address from the peer's SDP."""
        return self._remote

    @property
    def target(self) -> Address | None:
        """Where RTP is actually sent: the latched source if any, else `remote`."""
        return self._target

    @property
    def closed(self) -> bool:
        return self._closed

    def set_remote(
        self, address: tuple[str, int] | None, *, payload_map: Mapping[int, str] | None = None
    ) -> None:
        """Apply the peer's SDP: its address (an IP literal) and payload types (PT -> name).

        With a `payload_map`, packets of other payload types are rejected before they can latch.
        A new address drops the latch; the same address (a re-INVITE) only unlocks it, so media
        keeps flowing to the latched source until the phone's next packet confirms or moves it.
        """
        if self.offload is not None:
            self.reclaim()
        if address != self._remote:
            self._latch.reset()
            self._rtcp_latch.reset()
            self._rtcp_mux = False
        else:
            self._latch.unlock()
            self._rtcp_latch.unlock()
        self._latched = False  # the next packet goes through Latch.accept() again
        self._remote = address
        self._target = self._latch.source or address
        self.payload_map = dict(payload_map) if payload_map is not None else None
        self._payload_types = frozenset(payload_map) if payload_map is not None else None

    def add_tap(self, tap: PacketTap, *, inbound: bool = True, outbound: bool = True) -> None:
        """Let `tap` observe the packets of the chosen directions.

        A tap that ignores one direction should say so: every packet of every call would
        otherwise pay for a call that returns at once.
        """
        if self.offload is not None:
            self.reclaim()
        if inbound:
            self._in_taps += (tap,)
        if outbound:
            self._out_taps += (tap,)

    def remove_tap(self, tap: PacketTap) -> None:
        """Stop `tap` (both directions); ValueError if it is not attached."""
        if tap not in self._in_taps and tap not in self._out_taps:
            raise ValueError(f"{tap!r} is not a tap of {self!r}")
        self._in_taps = tuple(t for t in self._in_taps if t is not tap)
        self._out_taps = tuple(t for t in self._out_taps if t is not tap)

    def send(self, data: bytes | bytearray) -> None:
        """Send one RTP packet to the phone (dropped while there is nowhere to send it)."""
        target = self._target
        sock = self._rtp_socket
        if self.offload is not None:
            self.reclaim()
        if target is None or sock is None:
            self.counters.unsent += 1
            return
        if self._out_taps:
            self._notify_outbound(data)
        try:
            sock.sendto(data, target)
        except OSError as exc:  # a full buffer drops the packet: late audio is useless anyway
            self.counters.unsent += 1
            self._socket_error(exc)
            return
        counters = self.counters
        counters.packets_out += 1
        counters.bytes_out += len(data)

    def send_media(
        self,
        payload: bytes,
        payload_type: int,
        samples: int,
        *,
        writer: object,
        marker: bool = False,
    ) -> None:
        """Send a frame that `writer` (a player, tone generator) produced, on `self.output`.

        The first frame after the writer took over carries the marker bit and continues the
        phone's sequence and timestamp; `samples` is the frame length (160 for 20 ms at 8 kHz).
        """
        if self.offload is not None:
            self.reclaim()  # before the stream state is read: the worker has moved it on
        output = self.output
        sequence, timestamp, handover = output.next_frame(writer, samples, self._clock())
        second = (0x80 if marker or handover else 0) | payload_type
        self.send(RTP_HEADER.pack(0x80, second, sequence, timestamp, output.ssrc) + payload)

    def send_rtcp(self, data: bytes) -> None:
        if self._rtcp_mux:
            target, sock = self._target, self._rtp_socket
        else:
            target, sock = self._rtcp_latch.source, self._rtcp_socket
            if target is None and self._remote is not None:
                target = (self._remote[0], self._remote[1] + 1)
        if target is None or sock is None:
            self.counters.unsent += 1
            return
        try:
            sock.sendto(data, target)
        except OSError as exc:
            self.counters.unsent += 1
            self._socket_error(exc)
            return
        self.counters.rtcp_out += 1

    async def close(self) -> None:
        """Close both sockets; idempotent."""
        if self._closed:
            return
        if self.offload is not None:
            self.reclaim()
        self.on_packet = None
        self.on_rtcp = None
        self._in_taps = self._out_taps = ()
        # The writer (a bridge direction, a player) holds this endpoint: let both be freed
        # by reference counting rather than wait for the garbage collector.
        self.output.writer = None
        self._abort()

    def reclaim(self) -> None:
        """Take this endpoint's packets back from a relay worker (no-op if not offloaded).

        Synchronous: when it returns, our loop reads the socket again and the counters, latch
        and output stream carry what the worker did meanwhile.
        """
        offload = self.offload
        if offload is not None:
            offload.reclaim()

    def suspend_reading(self) -> None:
        """Stop reading RTP here (a relay worker reads the socket meanwhile)."""
        if self._reading and self._loop is not None and self._rtp_socket is not None:
            self._loop.remove_reader(self._rtp_socket.fileno())
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and self._loop is not None and self._rtp_socket is not None:
            self._loop.add_reader(self._rtp_socket.fileno(), self._rtp_readable)
            self._reading = True

    @property
    def rtp_socket(self) -> socket.socket | None:
        return self._rtp_socket

    def relay_handover(self) -> RelayHandover | None:
        """What a relay worker needs to move this endpoint's packets; None if it cannot.

        It can while the endpoint is in its steady state: latched onto a source that is
        sending, no RTCP on the RTP port, nothing watching what is sent to the phone, and
        the taps on what the phone sends content with a few payload types (key presses).
        """
        if self._closed or self.offload is not None or self._rtp_socket is None:
            return None
        source = self._latch.source
        if not self._latched or source is None or self._rtcp_mux or self._out_taps:
            return None
        forward: set[int] = set()
        for tap in self._in_taps:
            needed = getattr(tap, "payload_types_needed", None)
            types = needed() if needed is not None else None
            if types is None:
                return None
            forward |= types
        types = None if self._payload_types is None else tuple(sorted(self._payload_types))
        return RelayHandover(
            source, self._latch.seen_at, self._latch.quiet_period, types, tuple(sorted(forward))
        )

    def adopt_relay_state(
        self,
        base: EndpointCounters,
        packets: tuple[int, int, int, int, int, int],
        seen_at: float,
        source: Address,
    ) -> None:
        """Carry over what a relay worker did: its counters on top of `base`, the time the
        phone last sent (the RTP watchdog reads it) and a source it re-latched onto."""
        packets_in, bytes_in, packets_out, bytes_out, rejected, unsent = packets
        counters = self.counters
        counters.packets_in = base.packets_in + packets_in
        counters.bytes_in = base.bytes_in + bytes_in
        counters.packets_out = base.packets_out + packets_out
        counters.bytes_out = base.bytes_out + bytes_out
        counters.rejected = base.rejected + rejected
        counters.unsent = base.unsent + unsent
        if seen_at > self.received_at:
            self.received_at = seen_at
        latch = self._latch
        if source != latch.source:
            latch.source = source
            self._target = source
        if seen_at > latch.seen_at:
            latch.seen_at = seen_at

    def deliver_to_taps(self, data: bytes) -> None:
        """A packet a relay worker moved that the taps on what the phone sends must see."""
        for tap in self._in_taps:
            try:
                tap.on_rtp(self, data, True)
            except Exception:
                _log.exception("RTP tap %r failed on port %d", tap, self.local_port)

    def _abort(self) -> None:
        """Close both sockets now (also when setting them up failed half-way)."""
        self._closed = True
        loop = self._loop
        for sock in (self._rtp_socket, self._rtcp_socket):
            if sock is None:
                continue
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
            sock.close()
        self._reading = False
        self._rtp_socket = self._rtcp_socket = None

    async def _open(self, rtp_socket: socket.socket, rtcp_socket: socket.socket) -> None:
        """Watch the two bound sockets from the running loop.

        Plain readers rather than datagram transports: a reader can be removed and put back
        synchronously, which handing the socket to a relay worker and back needs, and a
        full send buffer should drop a late RTP packet, not queue it.
        """
        self._loop = asyncio.get_running_loop()
        self._rtp_socket = rtp_socket
        self._rtcp_socket = rtcp_socket
        self._loop.add_reader(rtcp_socket.fileno(), self._rtcp_readable)
        self.resume_reading()

    def _rtp_readable(self) -> None:
        received = self._read(self._rtp_socket)
        if received is not None:
            self._rtp_received(*received)

    def _rtcp_readable(self) -> None:
        received = self._read(self._rtcp_socket)
        if received is not None:
            self._rtcp_received(*received)

    def _read(self, sock: socket.socket | None) -> tuple[bytes, Address] | None:
        """One datagram (a reader is called once per datagram waiting), or None."""
        if sock is None:
            return None
        try:
            return sock.recvfrom(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._socket_error(exc)
            return None

    def _rtp_received(self, data: bytes, addr: Address) -> None:
        # The hot path: runs for every packet of every call; keep it flat.
        counters = self.counters
        if len(data) < 12 or data[0] >> 6 != 2:
            counters.rejected += 1
            return
        payload_type = data[1] & 0x7F
        if 72 <= payload_type <= 76:
            self._rtcp_received(data, addr, muxed=True)
            return
        if self._payload_types is not None and payload_type not in self._payload_types:
            counters.rejected += 1
            return
        now = self._clock()
        latch = self._latch
        if self._latched and addr == latch.source:
            # The latched source again, with no SDP change since: all Latch.accept() would
            # do is note the time, and the target already is that source.
            latch.seen_at = now
        elif latch.accept(addr, now):
            self._target = latch.source
            self._latched = True
        else:
            counters.rejected += 1
            return
        self.received_at = now
        counters.packets_in += 1
        counters.bytes_in += len(data)
        for tap in self._in_taps:  # inline rather than _notify_taps(): one call less per packet
            try:
                tap.on_rtp(self, data, True)
            except Exception:
                _log.exception("RTP tap %r failed on port %d", tap, self.local_port)
        handler = self.on_packet
        if handler is not None:
            try:
                handler(self, data)
            except Exception:
                # Never let one bad packet or handler bug take the socket down (asyncio closes
                # a datagram transport whose protocol raises).
                _log.exception("RTP handler failed on port %d", self.local_port)

    def _rtcp_received(self, data: bytes, addr: Address, *, muxed: bool = False) -> None:
        if len(data) < 8 or data[0] >> 6 != 2:
            self.counters.rejected += 1
            return
        now = self._clock()
        latch = self._latch if muxed else self._rtcp_latch
        if not latch.accept(addr, now):
            self.counters.rejected += 1
            return
        if muxed:
            self._target = latch.source
            self._rtcp_mux = True
        self.counters.rtcp_in += 1
        handler = self.on_rtcp
        if handler is not None:
            try:
                handler(self, data)
            except Exception:
                _log.exception("RTCP handler failed on port %d", self.local_port)

    def _notify_outbound(self, data: bytes | bytearray) -> None:
        for tap in self._out_taps:
            try:
                tap.on_rtp(self, data, False)
            except Exception:
                _log.exception("RTP tap %r failed on port %d", tap, self.local_port)

    def _socket_error(self, exc: Exception) -> None:
        # Mostly ICMP port unreachable: the phone is gone or not listening yet; harmless.
        _log.debug("RTP socket error on port %d: %s", self.local_port, exc)


class MediaManager:
    """Owns the RTP port range, every endpoint and every bridge of the PBX."""

    def __init__(
        self,
        bind_address: str,
        port_low: int,
        port_high: int,
        advertised_address: str | None = None,
        *,
        relatch_after: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        version = ipaddress.ip_address(bind_address).version  # an IP literal, not a host name
        self.bind_address = bind_address
        self.advertised_address = advertised_address or bind_address
        self._family = socket.AF_INET6 if version == 6 else socket.AF_INET
        self._allocator = PortAllocator(port_low, port_high)
        self._relatch_after = relatch_after
        self._clock = clock
        self._endpoints: set[RtpEndpoint] = set()
        self._bridges: dict[RtpEndpoint, Bridge] = {}
        self.offloader: RelayOffloader | None = None  # moves plain bridges to a worker process
        if self.advertised_address in ("0.0.0.0", "::"):
            _log.warning("RTP bound to %s with no advertised address for SDP", bind_address)

    @property
    def endpoint_count(self) -> int:
        return len(self._endpoints)

    @property
    def bridge_count(self) -> int:
        return len(set(self._bridges.values()))

    @property
    def ports_in_use(self) -> int:
        return self._allocator.in_use

    async def create_endpoint(self) -> RtpEndpoint:
        """A new endpoint on the next free port pair; ports another process holds are skipped."""
        for _ in range(self._allocator.capacity):
            port = self._allocator.allocate()  # raises PortsExhaustedError when all are ours
            try:
                rtp_socket = self._bind(port)
                try:
                    rtcp_socket = self._bind(port + 1)
                except OSError:
                    rtp_socket.close()
                    raise
            except OSError as exc:
                _log.debug("RTP port %d/%d not bindable: %s", port, port + 1, exc)
                self._allocator.release(port)  # to the back of the queue
                continue
            endpoint = RtpEndpoint(
                self.advertised_address, port, relatch_after=self._relatch_after, clock=self._clock
            )
            try:
                await endpoint._open(rtp_socket, rtcp_socket)
            except BaseException:
                endpoint._abort()
                rtp_socket.close()
                rtcp_socket.close()
                self._allocator.release(port)
                raise
            self._endpoints.add(endpoint)
            return endpoint
        raise PortsExhaustedError(
            f"no bindable RTP port pair in {self._allocator.low}-{self._allocator.high}"
        )

    async def release(self, endpoint: RtpEndpoint) -> None:
        """Unbridge and close the endpoint and free its ports; a second call does nothing."""
        if endpoint not in self._endpoints:
            return
        self._endpoints.discard(endpoint)
        bridge = self._bridges.get(endpoint)
        if bridge is not None:
            self.unbridge(bridge)
        try:
            await endpoint.close()
        finally:
            self._allocator.release(endpoint.local_port)

    def bridge(
        self, a: RtpEndpoint, b: RtpEndpoint, a_codec: CodecSpec, b_codec: CodecSpec
    ) -> Bridge:
        """Relay a <-> b. Each endpoint can be in one bridge at a time: unbridge first."""
        for endpoint in (a, b):
            if endpoint not in self._endpoints:
                raise ValueError(f"{endpoint!r} is not an open endpoint of this manager")
            if endpoint in self._bridges:
                raise ValueError(f"{endpoint!r} is already bridged")
        bridge = Bridge(a, b, a_codec, b_codec)
        bridge.start()
        self._bridges[a] = self._bridges[b] = bridge
        return bridge

    def unbridge(self, bridge: Bridge) -> None:
        """Stop relaying; the endpoints stay open (for re-bridging or a player). Idempotent."""
        bridge.a.reclaim()
        bridge.stop()
        for endpoint in (bridge.a, bridge.b):
            if self._bridges.get(endpoint) is bridge:
                del self._bridges[endpoint]

    def bridge_of(self, endpoint: RtpEndpoint) -> Bridge | None:
        return self._bridges.get(endpoint)

    def bridges(self) -> set[Bridge]:
        return set(self._bridges.values())

    async def close(self) -> None:
        """Release every endpoint (shutdown)."""
        if self.offloader is not None:
            await self.offloader.close()
        for endpoint in list(self._endpoints):
            await self.release(endpoint)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.bind_address, port))
        except OSError:
            sock.close()
            raise
        try:
            if self._family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, _DSCP_EF)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _DSCP_EF)
        except OSError as exc:  # not permitted everywhere; marking is only a nicety
            _log.debug("cannot set DSCP on RTP socket: %s", exc)
        return sock
