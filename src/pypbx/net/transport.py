"""UDP and TCP listeners that hand raw SIP bytes to the stack and send what it returns.

They know nothing of SIP beyond stream framing: the stack decides what to parse and answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from pypbx.sip.framing import StreamFramer
from pypbx.sip.message import SipParseError

log = logging.getLogger(__name__)

Addr = tuple[str, int]
DataHandler = Callable[[bytes, Addr, str], None]


class UdpTransport(asyncio.DatagramProtocol):
    """One UDP socket; every datagram is one SIP message (or a keep-alive)."""

    def __init__(self, on_data: DataHandler) -> None:
        self._on_data = on_data
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) <= 4 and not data.strip():
            return  # CRLF keep-alive (RFC 5626) or empty datagram
        try:
            self._on_data(data, (addr[0], addr[1]), "udp")
        except Exception:  # a bug handling one message must never stop the socket
            log.exception("unhandled error processing datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def send(self, data: bytes, dest: Addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, dest)


class TcpConnection(asyncio.Protocol):
    """One TCP connection; frames the byte stream into SIP messages by Content-Length."""

    def __init__(self, registry: TcpRegistry) -> None:
        self._registry = registry
        self._framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr = ("", 0)
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though not necessarily an asyncio.Transport subclass (uvloop's)
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self._registry.add(self)
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            log.warning("closing TCP connection from %s:%s: %s", *self.peer, exc.reason)
            if self.transport is not None:
                self.transport.close()
            return
        for message in messages:
            try:
                self._registry.on_data(message, self.peer, "tcp")
            except Exception:
                log.exception("unhandled error processing TCP message from %s", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.remove(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class TcpRegistry:
    """Open TCP connections by peer address, so responses and requests reuse them."""

    def __init__(self, on_data: DataHandler) -> None:
        self.on_data = on_data
        self._connections: dict[Addr, TcpConnection] = {}
        self._pending: dict[Addr, asyncio.Task[TcpConnection | None]] = {}

    def add(self, conn: TcpConnection) -> None:
        self._connections[conn.peer] = conn

    def remove(self, conn: TcpConnection) -> None:
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]

    def protocol_factory(self) -> TcpConnection:
        return TcpConnection(self)

    def send(self, data: bytes, dest: Addr) -> None:
        conn = self._connections.get(dest)
        if conn is not None:
            conn.send(data)
            return
        # No connection yet: open one and send when it is up (RFC 3261 §18.1.1).
        task = self._pending.get(dest)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(dest))
            self._pending[dest] = task

        def _send_when_ready(t: asyncio.Task[TcpConnection | None]) -> None:
            connection = t.result() if not t.cancelled() else None
            if connection is not None:
                connection.send(data)

        task.add_done_callback(_send_when_ready)

    async def _connect(self, dest: Addr) -> TcpConnection | None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(self.protocol_factory, dest[0], dest[1]), 5.0
            )
            return conn
        except (OSError, TimeoutError) as exc:
            log.warning("TCP connect to %s:%s failed: %s", dest[0], dest[1], exc)
            return None
        finally:
            self._pending.pop(dest, None)

    def close_all(self) -> None:
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._connections.clear()
