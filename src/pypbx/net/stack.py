"""The asyncio driver around the sans-I/O SIP cores.

It parses what the transports receive, feeds the transaction layer with the loop's clock,
sends what the layer emits, arms one timer for the layer's next deadline, and hands
requests and responses to the transaction user (the PBX). Nothing here knows about calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pypbx.net.localaddr import advertised_address
from pypbx.net.transport import Addr, TcpRegistry, UdpTransport
from pypbx.sip.message import (
    DEFAULT_LIMITS,
    Message,
    Request,
    Response,
    SipParseError,
    SipURI,
    Via,
    make_response,
    parse_message,
)
from pypbx.sip.parse_memo import ParseMemo
from pypbx.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Retransmit,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
)

log = logging.getLogger(__name__)

# Transaction deadlines are rounded up to this grid (seconds) before a loop timer is armed.
# Under load they are dense (a registration storm ends a transaction every few hundred µs,
# 32 s after it began), and one loop timer per deadline cost a wake-up, a re-arm and a
# flush each; on the grid one wake-up ends them all. RFC 3261 timers are 500 ms and up, so
# 20 ms late is within what a network adds anyway.
TIMER_GRANULARITY = 0.02
# Receive buffer asked for on the UDP socket (the kernel caps it at net.core.rmem_max).  The
# default, ~200 KB, holds about 90 small datagrams once the kernel's per-packet overhead is
# counted: at 1000 REGISTER/s a 100 ms pause of the loop (a full garbage collection, the CPU
# lent to another process) overflows it, and every datagram lost costs a 500 ms client
# retransmission.  SIP servers commonly raise it the same way.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


@dataclass(slots=True)
class _ClientCallbacks:
    on_response: Callable[[Response], None]
    on_timeout: Callable[[], None] | None


RequestHandler = Callable[[RequestReceived], None]
StrayResponseHandler = Callable[[Response], None]
ServerTimeoutHandler = Callable[[ServerTransaction], None]


class SipStack:
    """Owns the SIP sockets and the transaction layer of one PBX process."""

    def __init__(
        self,
        bind_host: str,
        port: int,
        *,
        advertised: str | None = None,
        user_agent: str = "pypbx",
        tcp: bool = True,
    ) -> None:
        self.bind_host = bind_host
        self._with_tcp = tcp
        self.port = port
        self.advertised = advertised
        self.user_agent = user_agent
        self.layer = TransactionLayer()
        self.on_request: RequestHandler = self._reject_all
        self.on_stray_response: StrayResponseHandler = lambda response: None
        self.on_server_timeout: ServerTimeoutHandler = lambda txn: None
        self._udp: UdpTransport | None = None
        self._tcp = TcpRegistry(self.on_data)
        self._tcp_server: asyncio.Server | None = None
        self._callbacks: dict[ClientTransaction, _ClientCallbacks] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._flushing = False
        self.malformed_count = 0
        self._parse_memo = ParseMemo()  # phones repeat their Request-URI, To, CSeq and Via

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, udp = await loop.create_datagram_endpoint(
            lambda: UdpTransport(self.on_data), local_addr=(self.bind_host, self.port)
        )
        self._udp = udp
        if udp.transport is not None:
            _enlarge_receive_buffer(udp.transport)
        if self.port == 0 and udp.transport is not None:
            self.port = int(udp.transport.get_extra_info("sockname")[1])
        if not self._with_tcp:
            log.info("SIP listening on %s:%d (UDP)", self.bind_host, self.port)
            return
        self._tcp_server = await loop.create_server(
            self._tcp.protocol_factory, self.bind_host, self.port, reuse_address=True
        )
        log.info("SIP listening on %s:%d (UDP and TCP)", self.bind_host, self.port)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._tcp_server is not None:
            self._tcp_server.close()
        self._tcp.close_all()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    # ----------------------------------------------------------------- addresses
    def local_host(self, peer_ip: str) -> str:
        return advertised_address(self.bind_host, self.advertised, peer_ip)

    def new_via(self, peer_ip: str, transport: str) -> Via:
        return Via.new(transport.upper(), self.local_host(peer_ip), self.port)

    def contact_uri(self, peer_ip: str, transport: str, user: str | None = None) -> SipURI:
        params: dict[str, str | None] = {}
        if transport != "udp":
            params["transport"] = transport
        return SipURI(
            scheme="sip",
            user=user,
            password=None,
            host=self.local_host(peer_ip),
            port=self.port,
            params=params,
            headers={},
        )

    # ----------------------------------------------------------------- input
    def on_data(self, data: bytes, source: Addr, transport: str) -> None:
        try:
            message = parse_message(data, DEFAULT_LIMITS, self._parse_memo)
        except SipParseError as exc:
            self.malformed_count += 1
            if exc.request is not None and exc.request.method != "ACK":
                log.info("%d to %s:%d: %s", exc.status, source[0], source[1], exc.reason)
                response = make_response(exc.request, exc.status, exc.reason)
                self._send_raw(response.serialize(), source, transport)
            else:
                log.debug("dropped unparseable message from %s:%d: %s", *source, exc.reason)
            return
        self.layer.receive(message, source, transport, self._now())
        self._flush()

    # ----------------------------------------------------------------- output
    def send_request(
        self,
        request: Request,
        dest: Addr,
        transport: str,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None] | None = None,
    ) -> ClientTransaction:
        self._decorate(request)
        txn = self.layer.send_request(request, dest, transport, self._now())
        self._callbacks[txn] = _ClientCallbacks(on_response, on_timeout)
        self._flush()
        return txn

    def send_response(self, response: Response) -> None:
        self._decorate(response)
        self.layer.send_response(response, self._now())
        self._flush()

    def send_stateless(self, message: Message, dest: Addr, transport: str) -> None:
        """Send outside any transaction: ACK for 2xx, and 2xx retransmissions."""
        self._decorate(message)
        self._send_raw(message.serialize(), dest, transport)

    def _decorate(self, message: Message) -> None:
        header = "User-Agent" if isinstance(message, Request) else "Server"
        if header not in message.headers:
            message.headers.add(header, self.user_agent)

    def _send_raw(self, data: bytes, dest: Addr, transport: str) -> None:
        if transport == "tcp":
            self._tcp.send(data, dest)
        elif self._udp is not None:
            self._udp.send(data, dest)

    # ----------------------------------------------------------------- events
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _flush(self) -> None:
        if self._flushing:
            return  # the outer loop below picks up events produced by handlers
        self._flushing = True
        try:
            while True:
                events = self.layer.pop_events()
                if not events:
                    break
                for event in events:
                    try:
                        self._dispatch(event)
                    except Exception:
                        log.exception("error handling SIP event %r", type(event).__name__)
        finally:
            self._flushing = False
        self._arm_timer()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, Transmit):
            data = event.data if event.data is not None else event.message.serialize()
            self._send_raw(data, event.dest, event.transport)
        elif isinstance(event, Retransmit):
            self._send_raw(event.data, event.dest, event.transport)
        elif isinstance(event, TransactionTerminated):  # as many as transactions
            if isinstance(event.transaction, ClientTransaction):
                self._callbacks.pop(event.transaction, None)
        elif isinstance(event, RequestReceived):
            self.on_request(event)
        elif isinstance(event, ResponseReceived):
            callbacks = (
                self._callbacks.get(event.transaction) if event.transaction is not None else None
            )
            if callbacks is not None:
                callbacks.on_response(event.response)
            else:
                self.on_stray_response(event.response)
        elif isinstance(event, TransactionTimeout):
            txn = event.transaction
            if isinstance(txn, ClientTransaction):
                callbacks = self._callbacks.pop(txn, None)
                if callbacks is not None and callbacks.on_timeout is not None:
                    callbacks.on_timeout()
            else:
                self.on_server_timeout(txn)

    def _arm_timer(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline is not None:
            deadline = math.ceil(deadline / TIMER_GRANULARITY) * TIMER_GRANULARITY
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self.layer.handle_timer(self._now())
        self._flush()

    @staticmethod
    def _reject_all(event: RequestReceived) -> None:
        raise RuntimeError("SipStack.on_request not set")


def _enlarge_receive_buffer(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < UDP_RECEIVE_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError as exc:
        log.debug("could not enlarge the UDP receive buffer: %s", exc)
