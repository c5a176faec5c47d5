"""Registering pypbx to VoIP providers (outside lines), RFC 3261 §10.2 client side.

A provider sends calls for our DIDs to wherever the line last registered, so each outside
line with ``Register`` set keeps one binding alive: REGISTER, answer the digest challenge,
refresh well before the granted time runs out, back off when the provider fails, and remove
the binding (Expires: 0) on shutdown. The Contact's user part is the line's username, so the
provider's INVITEs arrive with a Request-URI that names the line.

Time goes through an injected :class:`Clock` (the asyncio loop by default) so that refresh
and back-off schedules are tested without waiting; SIP timers stay in the stack.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from pypbx.net.stack import SipStack
from pypbx.net.transport import Addr
from pypbx.sip.digest_client import DigestClient, UserCredentials
from pypbx.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    SipURI,
    generate_call_id,
    generate_tag,
)

__all__ = [
    "Clock",
    "LineSettings",
    "TimerHandle",
    "TrunkRegistration",
    "refresh_delay",
]

log = logging.getLogger(__name__)

REGISTERED = "Registered"
REGISTERING = "Registering"
UNREGISTERED = "Unregistered"
FAILED_PREFIX = "Failed: "

_DEFAULT_PORT = 5060
_TRANSPORTS = ("udp", "tcp")
# RFC 3261 user-unreserved plus unreserved: what may stand unescaped in a URI's user part.
_USER_SAFE = "-_.!~*'()&=+$,;?/"


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The two things a registration needs from time; asyncio's loop is one (LoopClock)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The running asyncio loop as a :class:`Clock`."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()

    def time(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self._loop.call_later(delay, callback)


@dataclass(frozen=True, slots=True)
class LineSettings:
    """What registering an outside line needs (spec 8.3 "Outside line"), nothing more.

    ``authorization_name`` empty means "same as username". ``outbound_proxy`` is
    ``host[:port]`` or a SIP URI (``sip:host:port;transport=tcp``); requests go there with a
    Route to it, the Request-URI still names ``host``.
    """

    name: str
    host: str
    username: str
    password: str = field(default="", repr=False)
    port: int = _DEFAULT_PORT
    transport: str = "udp"
    authorization_name: str = ""
    register_expiry: int = 3600
    outbound_proxy: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError(f"line {self.name!r}: Host is required")
        if not self.username:
            raise ValueError(f"line {self.name!r}: Username is required to register")
        if not 0 < self.port < 65536:
            raise ValueError(f"line {self.name!r}: Port {self.port} out of range")
        if self.transport.lower() not in _TRANSPORTS:
            raise ValueError(f"line {self.name!r}: unsupported Transport {self.transport!r}")
        if self.register_expiry <= 0:
            raise ValueError(f"line {self.name!r}: RegisterExpiry must be positive")

    @property
    def auth_name(self) -> str:
        return self.authorization_name or self.username


def refresh_delay(granted: float) -> float:
    """When to refresh a binding granted for ``granted`` seconds.

    At 90% for long bindings, but never later than 32 s (a UDP transaction's lifetime)
    before expiry, and never earlier than half-way so short grants do not turn into a storm.
    """
    return max(granted / 2, min(granted * 0.9, granted - 32))


def _next_hop(line: LineSettings) -> tuple[str, int, str, str | None]:
    """(host, port, transport, Route value or None) of where requests are sent."""
    transport = line.transport.lower()
    if not line.outbound_proxy:
        return line.host, line.port, transport, None
    text = line.outbound_proxy.strip()
    if not text.lower().startswith(("sip:", "sips:")):
        text = "sip:" + text
    try:
        uri = SipURI.parse(text)
    except SipParseError:
        raise ValueError(f"line {line.name!r}: bad OutboundProxy {line.outbound_proxy!r}") from None
    if uri.opaque is not None or not uri.host:
        raise ValueError(f"line {line.name!r}: bad OutboundProxy {line.outbound_proxy!r}")
    if "transport" in uri.params:
        transport = uri.transport
    if transport not in _TRANSPORTS:
        raise ValueError(f"line {line.name!r}: unsupported OutboundProxy transport {transport!r}")
    route = uri.copy(user=None, password=None, headers={})
    route.params.setdefault("lr", None)
    return uri.host, uri.port or _DEFAULT_PORT, transport, f"<{route}>"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _same_binding(a: SipURI, b: SipURI) -> bool:
    return (
        a.user == b.user
        and a.host.lower() == b.host.lower()
        and (a.port or _DEFAULT_PORT) == (b.port or _DEFAULT_PORT)
    )


def _expires_param(address: Address) -> int | None:
    value = address.params.get("expires")
    if value and value.isascii() and value.isdigit():
        return int(value)
    return None


class TrunkRegistration:
    """Keeps one outside line registered to its provider.

    ``status`` is "Unregistered" before start() and after stop(), "Registering" until the
    first answer, then "Registered" or "Failed: <reason>" (a failed line retries by itself,
    30 s doubling to 15 min by default, and stays "Failed" until it succeeds).
    """

    def __init__(
        self,
        stack: SipStack,
        line: LineSettings,
        clock: Clock | None = None,
        *,
        retry_base: float = 30.0,
        retry_max: float = 900.0,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.stack = stack
        self.line = line
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.on_status = on_status
        self._clock = clock
        self._hop_host, self._hop_port, self._transport, self._route = _next_hop(line)
        self._digest = DigestClient(UserCredentials(line.auth_name, line.password))
        self._status = UNREGISTERED
        self._expires = line.register_expiry  # what we ask for; 423 raises it
        self._backoff = retry_base
        self._call_id: str | None = None  # one per boot cycle (§10.2.4)
        self._from_tag = generate_tag()
        self._cseq = 0
        self._generation = 0  # bumped by start/stop: callbacks of older ones are ignored
        self._running = False
        self._in_flight = False
        self._dest: Addr | None = None
        self._contact: SipURI | None = None
        self._expires_at: float | None = None
        self._bound_until: float | None = None  # the provider may hold a binding until then
        self._timer: TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unregistered: asyncio.Future[None] | None = None

    # ----------------------------------------------------------------- public
    @property
    def name(self) -> str:
        return self.line.name

    @property
    def status(self) -> str:
        return self._status

    @property
    def registered(self) -> bool:
        """True while the provider holds our binding (ListExtensions' Connected)."""
        return self._status == REGISTERED

    @property
    def contact(self) -> SipURI | None:
        """The Contact last registered (provider INVITEs for this line arrive addressed to it)."""
        return self._contact

    @property
    def expires_at(self) -> float | None:
        """Clock time at which the current binding lapses; None when not registered."""
        return self._expires_at

    def start(self) -> None:
        """Begin registering (needs the running loop); a second call does nothing."""
        if self._running:
            return
        if self._clock is None:
            self._clock = LoopClock()
        self._running = True
        self._generation += 1
        self._backoff = self.retry_base
        self._set_status(REGISTERING)
        self._attempt()

    async def stop(self, timeout: float = 5.0) -> None:
        """Remove our binding (REGISTER with Expires: 0), waiting at most ``timeout`` seconds.

        Skipped when no binding can exist: nothing granted that is still running, and no
        REGISTER in flight.
        """
        if not self._running:
            return
        self._running = False
        self._generation += 1
        self._cancel_timer()
        for task in list(self._tasks):
            task.cancel()
        bound_until = self._bound_until
        may_be_bound = self._in_flight or (bound_until is not None and bound_until > self._now())
        dest = self._dest
        if may_be_bound and dest is not None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._unregistered = future
            self._send(self._new_register(dest, 0), self._generation)
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                log.warning("line %s: no answer to the unregister in %g s", self.name, timeout)
            finally:
                self._unregistered = None
                self._generation += 1
        self._in_flight = False
        self._expires_at = self._bound_until = None
        self._set_status(UNREGISTERED)

    # ----------------------------------------------------------------- attempts
    def _attempt(self) -> None:
        """Timer and start() entry: resolve the next hop, then send a REGISTER."""
        self._timer = None
        if not self._running or self._in_flight:
            return
        task = asyncio.get_running_loop().create_task(self._register(self._generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register(self, generation: int) -> None:
        try:
            dest = await self._resolve()
        except OSError as exc:
            if generation == self._generation:
                self._failed(f"cannot resolve {self._hop_host}: {exc}")
            return
        if generation != self._generation:
            return
        self._dest = dest
        self._send(self._new_register(dest, self._expires), generation)

    async def _resolve(self) -> Addr:
        if _is_ip(self._hop_host):
            return self._hop_host, self._hop_port
        family = socket.AF_INET6 if ":" in self.stack.bind_host else socket.AF_INET
        kind = socket.SOCK_STREAM if self._transport == "tcp" else socket.SOCK_DGRAM
        infos = await asyncio.get_running_loop().getaddrinfo(
            self._hop_host, self._hop_port, family=family, type=kind
        )
        if not infos:
            raise OSError("no address")
        sockaddr = infos[0][4]
        return str(sockaddr[0]), int(sockaddr[1])

    def _new_register(self, dest: Addr, expires: int) -> Request:
        line = self.line
        peer_ip = dest[0]
        if self._call_id is None:
            self._call_id = generate_call_id(self.stack.local_host(peer_ip))
        port = None if line.port == _DEFAULT_PORT else line.port
        registrar = SipURI(scheme="sip", host=line.host, port=port)
        aor = registrar.copy(user=quote(line.username, safe=_USER_SAFE))
        self._contact = self.stack.contact_uri(peer_ip, self._transport, aor.user)
        self._cseq += 1
        headers = Headers()
        headers.add("Via", str(self.stack.new_via(peer_ip, self._transport)))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(Address(aor, params={"tag": self._from_tag})))
        headers.add("To", str(Address(aor)))
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        if self._route is not None:
            headers.add("Route", self._route)
        headers.add("Contact", f"<{self._contact}>")
        headers.add("Expires", str(expires))
        request = Request("REGISTER", registrar, headers)
        self._digest.prepare(request)
        return request

    def _send(self, request: Request, generation: int) -> None:
        assert self._dest is not None
        self._cseq = max(self._cseq, request.cseq[0])
        self._in_flight = True
        self.stack.send_request(
            request,
            self._dest,
            self._transport,
            on_response=lambda response: self._on_response(generation, request, response),
            on_timeout=lambda: self._on_timeout(generation, request),
        )

    # ----------------------------------------------------------------- outcomes
    def _on_response(self, generation: int, request: Request, response: Response) -> None:
        if generation != self._generation or response.status < 200:
            return
        self._in_flight = False
        status = response.status
        unregister = request.expires == 0
        if status in (401, 407):
            retry = self._digest.retry(request, response)
            if retry is not None:
                self._send(retry, generation)
                return
            reason = self._digest.refusal or "authentication failed"
        elif 200 <= status < 300:
            if unregister:
                self._unregister_done(f"{status} {response.reason}")
            else:
                self._registered(request, response)
            return
        elif status == 423 and not unregister and self._interval_too_brief(response):
            self._send(self._new_register(self._dest_or_raise(), self._expires), generation)
            return
        else:
            reason = f"{status} {response.reason}"
        if unregister:
            self._unregister_done(reason)
        else:
            self._failed(reason, retry_after=_retry_after(response))

    def _on_timeout(self, generation: int, request: Request) -> None:
        if generation != self._generation:
            return
        self._in_flight = False
        reason = "no response from the provider"
        if request.expires == 0:
            self._unregister_done(reason)
        else:
            self._failed(reason)

    def _interval_too_brief(self, response: Response) -> bool:
        """423: ask again with the registrar's Min-Expires, if that is really longer."""
        value = response.headers.get("Min-Expires", "") or ""
        if not (value.isascii() and value.isdigit()) or int(value) <= self._expires:
            return False
        log.info("line %s: provider wants Expires >= %s", self.name, value)
        self._expires = int(value)
        return True

    def _registered(self, request: Request, response: Response) -> None:
        granted = self._granted(request, response)
        if granted <= 0:
            self._failed("the provider granted no registration time")
            return
        now = self._now()
        self._expires_at = self._bound_until = now + granted
        self._backoff = self.retry_base
        delay = refresh_delay(granted)
        log.debug("line %s: registered for %d s, refresh in %.0f s", self.name, granted, delay)
        self._set_status(REGISTERED)
        self._schedule(delay)

    def _granted(self, request: Request, response: Response) -> int:
        """The expiry the registrar granted our Contact: its expires param, else Expires."""
        try:
            contacts = [] if response.has_wildcard_contact else response.contacts
        except SipParseError:
            contacts = []
        if self._contact is not None:
            for address in contacts:
                if _same_binding(address.uri, self._contact):
                    value = _expires_param(address)
                    if value is not None:
                        return value
        if response.expires is not None:
            return response.expires
        # A registrar behind NAT may rewrite our Contact; a lone binding is still ours.
        if len(contacts) == 1 and (value := _expires_param(contacts[0])) is not None:
            return value
        return request.expires if request.expires is not None else self._expires

    def _failed(self, reason: str, *, retry_after: int | None = None) -> None:
        self._expires_at = None
        delay = self._backoff if retry_after is None else max(self._backoff, retry_after)
        delay = min(delay, self.retry_max)
        self._backoff = min(self._backoff * 2, self.retry_max)
        log.warning("line %s: registration failed: %s; retry in %.0f s", self.name, reason, delay)
        self._set_status(FAILED_PREFIX + reason)
        self._schedule(delay)

    def _unregister_done(self, outcome: str) -> None:
        log.info("line %s: unregister answered: %s", self.name, outcome)
        if self._unregistered is not None and not self._unregistered.done():
            self._unregistered.set_result(None)

    # ----------------------------------------------------------------- helpers
    def _set_status(self, status: str) -> None:
        if status == self._status:
            return
        log.info("line %s: %s -> %s", self.name, self._status, status)
        self._status = status
        if self.on_status is not None:
            self.on_status(status)

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        if self._running:
            assert self._clock is not None
            self._timer = self._clock.call_later(delay, self._attempt)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _now(self) -> float:
        assert self._clock is not None
        return self._clock.time()

    def _dest_or_raise(self) -> Addr:
        assert self._dest is not None
        return self._dest


def _retry_after(response: Response) -> int | None:
    """Retry-After seconds (§20.33: delta-seconds, then optional comment and params)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    head = value.split(";", 1)[0].split("(", 1)[0].strip()
    return int(head) if head.isascii() and head.isdigit() else None
