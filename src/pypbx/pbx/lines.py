"""Outside lines at run time: registrations to providers, and who may call in through one.

A line is an extension record of type Line (configured over AddConfig). Lines with Register
keep a registration to their provider (`TrunkRegistration`), restarted when the line is
changed. Calls that claim to come from a provider are trusted only when they come from that
provider's address and are for one of the line's numbers: an open PBX that let anyone on
the internet place outside calls would be found by toll-fraud scanners within hours.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from pypbx.net.stack import SipStack
from pypbx.net.transport import Addr
from pypbx.pbx.trunks import LineSettings as TrunkLine
from pypbx.pbx.trunks import TrunkRegistration
from pypbx.sip.message import Request
from pypbx.store.records import ExtensionRecord, LineSettings, line_settings
from pypbx.store.store import Store

__all__ = ["InboundLine", "Lines"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundLine:
    """A call arriving on a line: which line, the number called (DID) and who calls."""

    line: LineSettings
    did: str
    caller: str


class Lines:
    def __init__(self, stack: SipStack, store: Store) -> None:
        self.stack = stack
        self.store = store
        self.registrations: dict[str, TrunkRegistration] = {}
        self._cached: list[LineSettings] = []
        self._generation = -1
        self._resolved: dict[str, tuple[float, set[str]]] = {}

    async def start(self) -> None:
        for record in await self.store.list_extensions("Line"):
            self._register(record)

    async def stop(self) -> None:
        registrations = list(self.registrations.values())
        self.registrations.clear()
        if registrations:
            await asyncio.gather(*(r.stop(timeout=2.0) for r in registrations))

    async def changed(self, line_id: str) -> None:
        """A line was added, modified or removed: restart its registration."""
        self._resolved.pop(line_id, None)
        old = self.registrations.pop(line_id, None)
        if old is not None:
            await old.stop(timeout=2.0)
        record = await self.store.get_extension(line_id)
        if record is not None and record.type == "Line":
            self._register(record)

    async def _lines(self) -> list[LineSettings]:
        """The enabled lines, re-read only when the extensions changed (every INVITE asks)."""
        generation = self.store.extensions_generation
        if generation != self._generation:
            records = await self.store.list_extensions("Line")
            self._cached = [line_settings(r) for r in records if r.enabled]
            self._generation = generation
        return self._cached

    async def _addresses(self, line: LineSettings) -> set[str]:
        """The IP addresses a line's provider (or its outbound proxy) sends from, looked up
        at most once a minute."""
        loop = asyncio.get_running_loop()
        cached = self._resolved.get(line.name)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        hosts = {line.host}
        if line.outbound_proxy:
            hosts.add(line.outbound_proxy.rsplit(":", 1)[0].strip("[]"))
        found: set[str] = set()
        for host in hosts:
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except OSError:
                continue
            found.update(str(info[4][0]) for info in infos)
        self._resolved[line.name] = (loop.time() + 60.0, found)
        return found

    def status(self, line_id: str) -> str | None:
        registration = self.registrations.get(line_id)
        return None if registration is None else registration.status

    def _register(self, record: ExtensionRecord) -> None:
        settings = line_settings(record)
        if not record.enabled or not settings.register or not settings.host:
            return
        try:
            trunk = TrunkLine(
                name=settings.name,
                host=settings.host,
                username=settings.username,
                password=settings.password or "",
                port=settings.port,
                transport=settings.transport,
                authorization_name=settings.authorization_name,
                register_expiry=settings.register_expiry,
                outbound_proxy=settings.outbound_proxy,
            )
        except ValueError as exc:
            log.warning("line %s cannot register: %s", record.id, exc)
            return
        registration = TrunkRegistration(self.stack, trunk)
        self.registrations[record.id] = registration
        registration.start()

    async def inbound(self, request: Request, source: Addr) -> InboundLine | None:
        """The line an INVITE arrives on, if it comes from a line's provider and is for
        one of its numbers (DIDs, or the account's user name); None otherwise."""
        for line in await self._lines():
            if source[0] not in await self._addresses(line):
                continue
            called = request.uri.user or ""
            did = request.to_addr.uri.user or called
            numbers = set(line.dids)
            if called in numbers:
                did = called
            elif did not in numbers and called != line.username:
                continue
            caller = request.from_addr.uri.user or ""
            return InboundLine(line, did, caller)
        return None
