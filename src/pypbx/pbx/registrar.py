"""The registrar (RFC 3261 §10.3): where each extension's phones can be reached.

Bindings live in memory for routing speed and are written behind to the store (batched,
see `pypbx.store.binding_writer`) so a restart keeps every phone reachable without waiting
for it to re-register, and a REGISTER costs no database round trip of its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pypbx.net.transport import Addr
from pypbx.pbx.auth import AuthResult
from pypbx.pbx.replies import reply
from pypbx.sip.message import Address, Request, Response, SipParseError
from pypbx.sip.transaction import RequestReceived
from pypbx.store.records import BindingRecord, ExtensionRecord
from pypbx.store.store import Store

log = logging.getLogger(__name__)

MAX_BINDINGS_PER_EXTENSION = 10
# Contact values remembered parsed (see Registrar._contact); past this many, forgotten at once.
CONTACT_CACHE_SIZE = 10_000


@dataclass(slots=True)
class Binding:
    """One registered contact of an extension."""

    extension_id: str
    contact: str  # the Contact URI as registered; the Request-URI of calls to it
    source: Addr  # where the REGISTER came from: calls are sent here (NAT-safe)
    transport: str
    expires_at: datetime
    call_id: str
    cseq: int
    user_agent: str = ""

    def live(self, now: datetime) -> bool:
        return self.expires_at > now

    def to_record(self) -> BindingRecord:
        return BindingRecord(
            extension_id=self.extension_id,
            contact=self.contact,
            source=f"{self.source[0]}:{self.source[1]}",
            transport=self.transport,
            expires_at=self.expires_at,
            call_id=self.call_id,
            cseq=self.cseq,
            user_agent=self.user_agent,
        )

    @classmethod
    def from_record(cls, rec: BindingRecord) -> Binding:
        host, _, port = rec.source.rpartition(":")
        return cls(
            extension_id=rec.extension_id,
            contact=rec.contact,
            source=(host.strip("[]"), int(port)),
            transport=rec.transport,
            expires_at=rec.expires_at,
            call_id=rec.call_id,
            cseq=rec.cseq,
            user_agent=rec.user_agent,
        )


class ResponseSender(Protocol):
    """Where the registrar's answers go (the SIP stack). A protocol rather than the stack's
    class: the registrar is compiled (see scripts/compile_core.py), and a compiled function
    checks a class-typed argument at run time, which would refuse the tests' stand-ins."""

    def send_response(self, response: Response) -> None: ...


class RegisterAuthenticator(Protocol):
    """Who checks a REGISTER's credentials (`pypbx.pbx.auth.SipAuthenticator`)."""

    async def authenticate(self, request: Request, *, proxy: bool) -> AuthResult: ...

    def authenticate_cached(self, request: Request, *, proxy: bool) -> AuthResult | None: ...


class Registrar:
    def __init__(
        self,
        stack: ResponseSender,
        store: Store,
        authenticator: RegisterAuthenticator,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 600,
    ) -> None:
        self.stack = stack
        self.store = store
        self.auth = authenticator
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._bindings: dict[str, list[Binding]] = {}
        # The credentials each extension registered with, so a change of them can drop phones.
        self.credentials_seen: dict[str, tuple[str, ...]] = {}
        self._date: tuple[int, str] = (-1, "")  # (Unix second, its Date header value)
        self._contacts: dict[str, tuple[Address, str]] = {}

    # ----------------------------------------------------------------- queries
    def bindings(self, extension_id: str) -> list[Binding]:
        now = datetime.now(UTC)
        return [b for b in self._bindings.get(extension_id, []) if b.live(now)]

    def is_registered(self, extension_id: str) -> bool:
        return bool(self.bindings(extension_id))

    # ----------------------------------------------------------------- lifecycle
    async def load(self) -> None:
        now = datetime.now(UTC)
        await self.store.purge_expired_bindings(now)
        for rec in await self.store.list_bindings():
            binding = Binding.from_record(rec)
            if binding.live(now):
                self._bindings.setdefault(binding.extension_id, []).append(binding)
        log.info("restored %d registrations", sum(len(v) for v in self._bindings.values()))
        # Every phone re-registers after a restart: their lookups find the cache full.
        await self.store.load_extensions()

    async def expire_loop(self, interval: float = 5.0) -> None:
        """Forget expired bindings (memory and store) so they never ring."""
        while True:
            await asyncio.sleep(interval)
            now = datetime.now(UTC)
            for ext_id in list(self._bindings):
                live = [b for b in self._bindings[ext_id] if b.live(now)]
                if live:
                    self._bindings[ext_id] = live
                else:
                    del self._bindings[ext_id]
            try:
                await self.store.purge_expired_bindings(now)
            except Exception:
                log.exception("purging expired bindings failed")

    async def drop(self, extension_id: str) -> None:
        """Forget an extension's phones (removed, disabled, or credentials changed)."""
        if self._bindings.pop(extension_id, None):
            log.info("dropped registrations of extension %s", extension_id)
        await self.store.registrations.drop(extension_id)

    # ----------------------------------------------------------------- REGISTER
    async def handle(self, event: RequestReceived) -> None:
        result = await self.auth.authenticate(event.request, proxy=False)
        self._answer(event, result)

    def handle_now(self, event: RequestReceived) -> bool:
        """`handle` without awaiting; False (nothing done) when the extension must be read
        from the store, and then `handle` is the way. Why: the store's cache answers nearly
        every REGISTER, and a REGISTER answered at once needs no task of its own."""
        result = self.auth.authenticate_cached(event.request, proxy=False)
        if result is None:
            return False
        self._answer(event, result)
        return True

    def _answer(self, event: RequestReceived, result: AuthResult) -> None:
        """Answer a REGISTER once its credentials were checked; the extension may be the
        store cache's own record, so it is only read here."""
        request = event.request
        if result.response is not None:
            self.stack.send_response(result.response)
            return
        extension = result.extension
        assert extension is not None
        self.credentials_seen[extension.id] = credentials_fingerprint(extension)
        to_user = request.to_addr.uri.user or ""
        if to_user not in {extension.id, extension.username, extension.authorization_name}:
            self.stack.send_response(
                reply(request, 403, "Forbidden (To does not match credentials)")
            )
            return
        # One clock reading for the whole REGISTER: the expiries granted, the ones
        # reported back in the 200 and its Date all agree.
        now = datetime.now(UTC)
        try:
            changed, live = self._apply(request, extension.id, event.source, event.transport, now)
        except _RegisterError as exc:
            response = reply(request, exc.status, exc.reason)
            if exc.status == 423:
                response.headers.add("Min-Expires", str(self.min_expires))
            self.stack.send_response(response)
            return
        response = reply(request, 200)
        headers = response.headers
        for binding in live:
            remaining = max(0, int((binding.expires_at - now).total_seconds()))
            headers.add("Contact", f"<{binding.contact}>;expires={remaining}")
        headers.add("Date", self._http_date(now))
        self.stack.send_response(response)
        self._persist(extension, changed, event, request)

    def _http_date(self, now: datetime) -> str:
        """The Date header value (RFC 3261 §20.17), formatted once per second."""
        second = int(now.timestamp())
        cached = self._date
        if cached[0] != second:
            cached = self._date = (second, now.strftime("%a, %d %b %Y %H:%M:%S GMT"))
        return cached[1]

    def _apply(
        self, request: Request, ext_id: str, source: Addr, transport: str, now: datetime
    ) -> tuple[list[str], list[Binding]]:
        """Update the in-memory bindings; returns the contacts that changed and the
        extension's live bindings after the change."""
        raw_contacts = request.headers.get_all("Contact")
        live = [b for b in self._bindings.get(ext_id, ()) if b.expires_at > now]
        if not raw_contacts:
            return [], live  # a query: answer with the current bindings
        header_expires = request.expires
        current = {b.contact: b for b in live}
        call_id = request.call_id
        cseq = request.cseq[0]
        if "*" in raw_contacts:  # values come stripped (parser, Headers.add)
            if len(raw_contacts) != 1 or header_expires != 0:
                raise _RegisterError(400, "Wildcard Contact requires Expires: 0")
            self._bindings[ext_id] = []
            return list(current), []
        try:
            contacts = [self._contact(value) for value in raw_contacts]
        except SipParseError as exc:
            raise _RegisterError(400, f"Bad Contact: {exc.reason}") from exc
        changed: list[str] = []
        user_agent = request.headers.get("User-Agent") or ""
        expiry = now  # one timedelta per distinct interval, not per contact
        granted = -1
        for contact, key in contacts:
            expires = self._expires_of(contact, header_expires)
            existing = current.get(key)
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                raise _RegisterError(500, "Out of order REGISTER")
            if expires == 0:
                current.pop(key, None)
            else:
                if expires != granted:
                    granted = expires
                    expiry = now + timedelta(seconds=expires)
                current[key] = Binding(
                    ext_id, key, source, transport, expiry, call_id, cseq, user_agent
                )
            changed.append(key)
        if len(current) > 1:
            bindings = sorted(current.values(), key=_expires_at)
        else:
            bindings = list(current.values())
        if len(bindings) > MAX_BINDINGS_PER_EXTENSION:
            evicted = bindings[:-MAX_BINDINGS_PER_EXTENSION]
            bindings = bindings[-MAX_BINDINGS_PER_EXTENSION:]
            changed.extend(b.contact for b in evicted if b.contact not in changed)
        self._bindings[ext_id] = bindings
        return changed, list(bindings)

    def _contact(self, value: str) -> tuple[Address, str]:
        """A Contact value parsed, with its URI as text (the binding's key).

        Remembered by the raw text: a phone re-registers with the very same Contact every
        interval, so the parse (and the URI's text) need not be made again each time.
        Addresses are shared read-only views, as a message's are.
        """
        cache = self._contacts
        found = cache.get(value)
        if found is None:
            address = Address.parse(value)
            if len(cache) >= CONTACT_CACHE_SIZE:
                cache.clear()
            found = cache[value] = (address, str(address.uri))
        return found

    def _expires_of(self, contact: Address, header_expires: int | None) -> int:
        value = contact.params.get("expires")
        expires: int
        if value is not None:
            try:
                expires = int(value)
            except ValueError:
                expires = self.default_expires
        elif header_expires is not None:
            expires = header_expires
        else:
            expires = self.default_expires
        if expires < 0:
            raise _RegisterError(400, "Negative expires")
        if expires == 0:
            return 0
        if expires < self.min_expires:
            raise _RegisterError(423, "Interval Too Brief")
        return min(expires, self.max_expires)

    def _persist(
        self,
        extension: ExtensionRecord,
        changed: list[str],
        event: RequestReceived,
        request: Request,
    ) -> None:
        """Queue the changed bindings, and where the phone is, if that moved, for writing."""
        ext_id = extension.id
        writer = self.store.registrations
        live = {b.contact: b for b in self._bindings.get(ext_id, ())}
        for contact in changed:
            binding = live.get(contact)
            if binding is not None:
                writer.save(binding.to_record())
            else:
                writer.delete(ext_id, contact)
        if changed and live:
            last_ip = f"{event.source[0]}:{event.source[1]} ({event.transport.capitalize()})"
            user_agent = request.headers.get("User-Agent") or ""
            if (last_ip, user_agent) != (extension.last_ip, extension.user_agent):
                self.store.note_extension_runtime(ext_id, last_ip=last_ip, user_agent=user_agent)


def _expires_at(binding: Binding) -> datetime:
    return binding.expires_at


def credentials_fingerprint(ext: ExtensionRecord) -> tuple[str, ...]:
    return (
        ext.username,
        ext.authorization_name,
        ext.ha1_md5 or "",
        ext.ha1_sha256 or "",
        ext.password or "",
    )


class _RegisterError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
