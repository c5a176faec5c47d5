"""Outside-line registration: a real SipStack on 127.0.0.1 against a scripted provider.

The provider is a few lines of asyncio UDP (or TCP) in the test; time is a fake clock, so
refreshes and back-off are checked by their exact delays without waiting for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from peers.ports import PortAllocator
from pypbx.net.stack import SipStack
from pypbx.pbx.trunks import LineSettings, TrunkRegistration, refresh_delay
from pypbx.sip.digest import DigestVerifier, NonceManager, compute_ha1, parse_credentials
from pypbx.sip.framing import StreamFramer
from pypbx.sip.message import Request, Response, make_response, parse_message

USER = "15551230000"
AUTH_NAME = "acct77"
PASSWORD = "s3cret"
REALM = "provider.example"

Handler = Callable[[Request], Response | None]


# --- test doubles ---------------------------------------------------------------------------


@dataclass
class FakeTimer:
    deadline: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    now: float = 1000.0
    timers: list[FakeTimer] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[float]:
        """Delays from now of the timers still armed."""
        return sorted(t.deadline - self.now for t in self.timers if not t.cancelled)

    def fire(self) -> None:
        """Jump to the next armed timer and run it."""
        live = [t for t in self.timers if not t.cancelled]
        assert live, "no timer armed"
        timer = min(live, key=lambda t: t.deadline)
        self.timers.remove(timer)
        self.now = timer.deadline
        timer.callback()


class Provider:
    """A scripted registrar: ``handler`` answers each new request (None: stay silent)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[Request] = []
        self.port = 0

    @property
    def transactions(self) -> list[Request]:
        """Requests without UDP retransmissions (one per Via branch)."""
        seen: dict[str | None, Request] = {}
        for request in self.received:
            seen.setdefault(request.top_via.branch, request)
        return list(seen.values())

    def answer(self, data: bytes) -> bytes | None:
        message = parse_message(data)
        assert isinstance(message, Request)
        retransmission = any(r.top_via.branch == message.top_via.branch for r in self.received)
        self.received.append(message)
        if retransmission:
            return None
        response = self.handler(message)
        return response.serialize() if response is not None else None


class _UdpProvider(asyncio.DatagramProtocol):
    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.provider.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def response_to(request: Request, status: int, **headers: str) -> Response:
    response = make_response(request, status, to_tag="prov1")
    for name, value in headers.items():
        response.headers.add(name.replace("_", "-"), value)
    return response


class Registrar:
    """A registrar that really checks digests, with pypbx's server-side verifier."""

    def __init__(
        self, algorithms: tuple[str, ...] = ("MD5",), grant: int = 120, status: int = 401
    ) -> None:
        self.verifier = DigestVerifier(REALM, NonceManager(b"k" * 32), algorithms)
        self.grant = grant
        self.status = status

    def __call__(self, request: Request) -> Response:
        header = "Authorization" if self.status == 401 else "Proxy-Authorization"
        value = request.headers.get(header)
        now = time.time()
        if value is not None:
            creds = parse_credentials(value)
            assert creds.username == AUTH_NAME
            ha1 = compute_ha1(AUTH_NAME, REALM, PASSWORD, creds.algorithm.removesuffix("-sess"))
            verdict = self.verifier.verify(creds, request.method, ha1, now)
            if verdict == "ok":
                response = response_to(request, 200)
                response.headers.add(
                    "Contact", f"{request.headers.get('Contact')};expires={self.grant}"
                )
                return response
            assert verdict == "stale", verdict
        response = response_to(request, self.status)
        name = "WWW-Authenticate" if self.status == 401 else "Proxy-Authenticate"
        for challenge in self.verifier.challenges(now):
            response.headers.add(name, challenge)
        return response


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ports() -> PortAllocator:
    return PortAllocator()


@pytest.fixture
async def stack(ports: PortAllocator) -> AsyncIterator[SipStack]:
    # Not port 0: the stack binds UDP and TCP on one number, which must be free for both.
    sip = SipStack("127.0.0.1", ports.port())
    sip.on_request = lambda event: None
    await sip.start()
    yield sip
    await sip.stop()


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    prov = Provider(Registrar())
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _UdpProvider(prov), local_addr=("127.0.0.1", 0)
    )
    prov.port = int(transport.get_extra_info("sockname")[1])
    yield prov
    transport.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Setup:
    stack: SipStack
    provider: Provider
    clock: FakeClock
    statuses: list[str] = field(default_factory=list)
    trunks: list[TrunkRegistration] = field(default_factory=list)

    def trunk(self, **overrides: Any) -> TrunkRegistration:
        settings: dict[str, Any] = {
            "name": "prov",
            "host": "127.0.0.1",
            "port": self.provider.port,
            "username": USER,
            "authorization_name": AUTH_NAME,
            "password": PASSWORD,
        }
        settings.update(overrides)
        trunk = TrunkRegistration(
            self.stack, LineSettings(**settings), self.clock, on_status=self.statuses.append
        )
        self.trunks.append(trunk)
        return trunk


@pytest.fixture
async def setup(stack: SipStack, provider: Provider, clock: FakeClock) -> AsyncIterator[Setup]:
    state = Setup(stack, provider, clock)
    yield state
    for trunk in state.trunks:
        await trunk.stop(timeout=0.5)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def settle(clock: FakeClock, count: int, provider: Provider) -> None:
    """Wait until the provider saw ``count`` transactions and the outcome was handled.

    A running registration always arms exactly one timer once a REGISTER is settled (the
    refresh or the retry) and none while one is in flight, so that timer is the signal.
    """
    await until(lambda: len(provider.transactions) >= count, f"{count} REGISTERs")
    await until(lambda: bool(clock.pending()), "the final response")


# --- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "delay"), [(3600, 3240), (600, 540), (120, 88), (60, 30), (4, 2), (1, 0.5)]
)
def test_refresh_delay(granted: float, delay: float) -> None:
    assert refresh_delay(granted) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": ""}, "line 'x': Host is required"),
        ({"username": ""}, "line 'x': Username is required to register"),
        ({"port": 0}, "line 'x': Port 0 out of range"),
        ({"port": 65536}, "line 'x': Port 65536 out of range"),
        ({"transport": "tls"}, "line 'x': unsupported Transport 'tls'"),
        ({"register_expiry": 0}, "line 'x': RegisterExpiry must be positive"),
    ],
)
def test_line_settings_validation(overrides: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"name": "x", "host": "h", "username": "u"}
    settings.update(overrides)
    with pytest.raises(ValueError) as info:
        LineSettings(**settings)
    assert str(info.value) == message


def test_line_settings_defaults_and_secrecy() -> None:
    line = LineSettings(name="x", host="sip.example", username="u", password="pw")
    assert (line.port, line.transport, line.register_expiry, line.outbound_proxy) == (
        5060,
        "udp",
        3600,
        None,
    )
    assert line.auth_name == "u"
    assert "pw" not in repr(line)


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("sip:", "line 'x': bad OutboundProxy 'sip:'"),
        ("tel:+1234", "line 'x': bad OutboundProxy 'tel:+1234'"),
        ("proxy.example;transport=sctp", "line 'x': unsupported OutboundProxy transport 'sctp'"),
    ],
)
async def test_bad_outbound_proxy(stack: SipStack, proxy: str, message: str) -> None:
    line = LineSettings(name="x", host="h", username="u", outbound_proxy=proxy)
    with pytest.raises(ValueError) as info:
        TrunkRegistration(stack, line)
    assert str(info.value) == message


# --- registering ----------------------------------------------------------------------------


async def test_registers_answering_401_and_refreshes_in_advance(setup: Setup) -> None:
    setup.provider.handler = Registrar(algorithms=("MD5", "SHA-256"), grant=120)
    trunk = setup.trunk()
    assert trunk.status == "Unregistered"
    trunk.start()
    assert trunk.status == "Registering"
    await settle(setup.clock, 2, setup.provider)

    assert trunk.status == "Registered"
    assert setup.statuses == ["Registering", "Registered"]
    assert trunk.expires_at == setup.clock.now + 120
    assert setup.clock.pending() == [pytest.approx(88)]
    first, answer = setup.provider.transactions
    port = setup.stack.port
    assert str(first.uri) == f"sip:127.0.0.1:{setup.provider.port}"
    assert (first.headers.get("From") or "").startswith(
        f"<sip:{USER}@127.0.0.1:{setup.provider.port}>;tag="
    )
    assert first.headers.get("To") == f"<sip:{USER}@127.0.0.1:{setup.provider.port}>"
    assert first.headers.get("Contact") == f"<sip:{USER}@127.0.0.1:{port}>"
    assert str(trunk.contact) == f"sip:{USER}@127.0.0.1:{port}"
    assert first.headers.get("Expires") == "3600"
    assert first.headers.get("Max-Forwards") == "70"
    assert "Authorization" not in first.headers and "Route" not in first.headers
    creds = parse_credentials(answer.headers.get("Authorization") or "")
    assert (creds.username, creds.algorithm, creds.nc) == (AUTH_NAME, "SHA-256", "00000001")

    setup.clock.fire()  # the refresh
    await settle(setup.clock, 3, setup.provider)
    refresh = setup.provider.transactions[2]
    creds = parse_credentials(refresh.headers.get("Authorization") or "")
    assert (creds.algorithm, creds.nc) == ("SHA-256", "00000002")
    assert trunk.status == "Registered"
    assert setup.statuses == ["Registering", "Registered"]  # a refresh is no transition
    requests = setup.provider.transactions
    assert {r.call_id for r in requests} == {first.call_id}
    assert {r.from_addr.tag for r in requests} == {first.from_addr.tag}
    assert [r.cseq[0] for r in requests] == [1, 2, 3]


async def test_407_is_answered_with_proxy_authorization(setup: Setup) -> None:
    setup.provider.handler = Registrar(status=407)
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 2, setup.provider)
    assert trunk.status == "Registered"
    answer = setup.provider.transactions[1]
    assert "Authorization" not in answer.headers
    assert parse_credentials(answer.headers.get("Proxy-Authorization") or "").realm == REALM


def _challenge(request: Request, nonce: str, stale: bool = False) -> Response:
    value = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth"'
    return response_to(request, 401, WWW_Authenticate=value + (", stale=true" if stale else ""))


def _nonce(request: Request) -> str | None:
    value = request.headers.get("Authorization")
    return parse_credentials(value).nonce if value else None


async def test_stale_nonce_is_answered_again(setup: Setup) -> None:
    def handler(request: Request) -> Response:
        nonce = _nonce(request)
        if nonce is None:
            return _challenge(request, "n1")
        if nonce == "n1":
            return _challenge(request, "n2", stale=True)
        return response_to(request, 200, Expires="60")

    setup.provider.handler = handler
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 3, setup.provider)
    assert trunk.status == "Registered"
    assert [_nonce(r) for r in setup.provider.transactions] == [None, "n1", "n2"]
    assert setup.clock.pending() == [30]  # Expires: 60 -> refresh half-way


async def test_rejected_password_fails_then_backs_off_exponentially(setup: Setup) -> None:
    setup.provider.handler = lambda request: _challenge(request, "same")
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 2, setup.provider)
    reason = "Failed: credentials rejected (401 with the same nonce)"
    assert trunk.status == reason
    assert trunk.expires_at is None
    assert setup.clock.pending() == [30]

    delays = []
    for attempt in range(7):
        setup.clock.fire()
        await settle(setup.clock, 4 + 2 * attempt, setup.provider)
        delays.extend(setup.clock.pending())
    assert delays == [60, 120, 240, 480, 900, 900, 900]
    assert len(setup.provider.transactions) == 16  # two per attempt: never a loop
    assert setup.statuses == ["Registering", reason]  # retries do not flap the status

    setup.provider.handler = Registrar()  # the password got fixed at the provider
    setup.clock.fire()
    await settle(setup.clock, 18, setup.provider)
    assert trunk.status == "Registered"
    setup.provider.handler = lambda request: response_to(request, 403)
    setup.clock.fire()  # the refresh fails: back-off starts again at 30 s
    await settle(setup.clock, 19, setup.provider)
    assert trunk.status == "Failed: 403 Forbidden"
    assert setup.clock.pending() == [30]


@pytest.mark.parametrize(
    ("status", "headers", "reason", "delay"),
    [
        (403, {}, "403 Forbidden", 30),
        (404, {}, "404 Not Found", 30),
        (503, {"Retry_After": "120"}, "503 Service Unavailable", 120),
        (503, {"Retry_After": "5 (maintenance);duration=60"}, "503 Service Unavailable", 30),
        (503, {"Retry_After": "99999"}, "503 Service Unavailable", 900),
        (302, {"Contact": "<sip:elsewhere.example>"}, "302 Moved Temporarily", 30),
        (423, {}, "423 Interval Too Brief", 30),
        (423, {"Min_Expires": "60"}, "423 Interval Too Brief", 30),  # not above what we asked
    ],
)
async def test_final_failures(
    setup: Setup, status: int, headers: dict[str, str], reason: str, delay: float
) -> None:
    setup.provider.handler = lambda request: response_to(request, status, **headers)
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    assert trunk.status == f"Failed: {reason}"
    assert setup.clock.pending() == [delay]
    assert len(setup.provider.transactions) == 1


async def test_423_asks_again_with_min_expires(setup: Setup) -> None:
    def handler(request: Request) -> Response:
        if request.expires is not None and 0 < request.expires < 1800:
            return response_to(request, 423, Min_Expires="1800")
        return response_to(request, 200)

    setup.provider.handler = handler
    trunk = setup.trunk(register_expiry=600)
    trunk.start()
    await settle(setup.clock, 2, setup.provider)
    assert trunk.status == "Registered"
    assert [r.expires for r in setup.provider.transactions] == [600, 1800]
    assert [r.cseq[0] for r in setup.provider.transactions] == [1, 2]
    assert setup.clock.pending() == [pytest.approx(1620)]  # granted = what we asked
    setup.clock.fire()
    await settle(setup.clock, 3, setup.provider)
    assert setup.provider.transactions[2].expires == 1800  # remembered for refreshes


def _contact_ok(*contacts: str, **headers: str) -> Handler:
    def handler(request: Request) -> Response:
        response = response_to(request, 200, **headers)
        for contact in contacts:
            response.headers.add(
                "Contact", contact.replace("OURS", request.headers.get("Contact") or "")
            )
        return response

    return handler


@pytest.mark.parametrize(
    ("handler", "granted"),
    [
        (
            _contact_ok("<sip:other@192.0.2.7:5060>;expires=50", "OURS;expires=200", Expires="300"),
            200,
        ),
        (_contact_ok("<sip:other@192.0.2.7:5060>;expires=50", "OURS", Expires="300"), 300),
        (_contact_ok(Expires="300"), 300),
        (_contact_ok("<sip:15551230000@203.0.113.9:40000>;expires=77"), 77),  # NAT-rewritten
        (_contact_ok("<sip:a@192.0.2.7>;expires=50", "<sip:b@192.0.2.8>;expires=60"), 3600),
        (_contact_ok(), 3600),
    ],
)
async def test_granted_expiry(setup: Setup, handler: Handler, granted: int) -> None:
    setup.provider.handler = handler
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    assert trunk.status == "Registered"
    assert trunk.expires_at == setup.clock.now + granted
    assert setup.clock.pending() == [pytest.approx(refresh_delay(granted))]


async def test_zero_granted_is_a_failure(setup: Setup) -> None:
    setup.provider.handler = _contact_ok("OURS;expires=0")
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    assert trunk.status == "Failed: the provider granted no registration time"


async def test_silent_provider_times_out(setup: Setup) -> None:
    setup.stack.layer.t1 = 0.01  # Timer F = 64*T1 = 0.64 s
    setup.provider.handler = lambda request: None
    trunk = setup.trunk()
    trunk.start()
    await until(lambda: trunk.status.startswith("Failed"), "the timeout")
    assert trunk.status == "Failed: no response from the provider"
    assert len(setup.provider.transactions) == 1
    assert len(setup.provider.received) > 1  # UDP retransmissions
    assert setup.clock.pending() == [30]


async def test_outbound_proxy_gets_the_requests_with_a_route(setup: Setup) -> None:
    setup.provider.handler = Registrar()
    proxy = f"sip:127.0.0.1:{setup.provider.port};transport=udp"
    trunk = setup.trunk(host="provider.invalid", port=5070, outbound_proxy=proxy)
    trunk.start()
    await settle(setup.clock, 2, setup.provider)
    assert trunk.status == "Registered"
    for request in setup.provider.transactions:
        assert str(request.uri) == "sip:provider.invalid:5070"
        assert request.headers.get("To") == f"<sip:{USER}@provider.invalid:5070>"
        assert request.headers.get("Route") == (
            f"<sip:127.0.0.1:{setup.provider.port};transport=udp;lr>"
        )


async def test_user_part_is_escaped(setup: Setup) -> None:
    setup.provider.handler = _contact_ok()
    trunk = setup.trunk(username="ann smith@home")
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    contact = setup.provider.transactions[0].headers.get("Contact")
    assert contact == f"<sip:ann%20smith%40home@127.0.0.1:{setup.stack.port}>"


# --- stopping -------------------------------------------------------------------------------


async def test_stop_unregisters_with_expires_zero(setup: Setup) -> None:
    setup.provider.handler = Registrar()
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 2, setup.provider)
    await trunk.stop(timeout=2)
    assert trunk.status == "Unregistered"
    assert setup.statuses == ["Registering", "Registered", "Unregistered"]
    assert trunk.expires_at is None
    assert setup.clock.pending() == []
    unregister = setup.provider.transactions[-1]
    assert len(setup.provider.transactions) == 3
    assert unregister.headers.get("Expires") == "0"
    assert unregister.headers.get("Contact") == setup.provider.transactions[0].headers.get(
        "Contact"
    )
    assert parse_credentials(unregister.headers.get("Authorization") or "").nc == "00000002"
    await trunk.stop()  # twice is harmless
    assert len(setup.provider.transactions) == 3


async def test_stop_answers_a_challenge_to_the_unregister(setup: Setup) -> None:
    setup.provider.handler = _contact_ok()
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    setup.provider.handler = Registrar()
    await trunk.stop(timeout=2)
    assert [r.expires for r in setup.provider.transactions] == [3600, 0, 0]
    assert "Authorization" in setup.provider.transactions[2].headers


async def test_stop_waits_a_bounded_time_for_a_silent_provider(setup: Setup) -> None:
    setup.provider.handler = _contact_ok()
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    setup.provider.handler = lambda request: None
    loop = asyncio.get_running_loop()
    started = loop.time()
    await trunk.stop(timeout=0.3)
    assert 0.25 < loop.time() - started < 1.0
    assert trunk.status == "Unregistered"
    assert setup.provider.transactions[-1].expires == 0


async def test_stop_without_a_binding_sends_nothing(setup: Setup) -> None:
    setup.provider.handler = lambda request: response_to(request, 403)
    trunk = setup.trunk()
    trunk.start()
    await settle(setup.clock, 1, setup.provider)
    await trunk.stop(timeout=2)
    assert trunk.status == "Unregistered"
    assert len(setup.provider.transactions) == 1
    assert setup.clock.pending() == []


async def test_stop_during_a_registration_unregisters_and_ignores_late_answers(
    setup: Setup,
) -> None:
    held: list[Request] = []

    def handler(request: Request) -> Response | None:
        if request.expires:
            held.append(request)  # never answered
            return None
        return response_to(request, 200)

    setup.provider.handler = handler
    trunk = setup.trunk()
    trunk.start()
    await until(lambda: len(held) == 1, "the REGISTER")
    await trunk.stop(timeout=2)
    assert [r.expires for r in setup.provider.transactions] == [3600, 0]
    assert trunk.status == "Unregistered"
    assert setup.statuses == ["Registering", "Unregistered"]


async def test_restart_after_stop_continues_the_sequence(setup: Setup) -> None:
    setup.provider.handler = _contact_ok()
    trunk = setup.trunk()
    trunk.start()
    trunk.start()  # already running: nothing more is sent
    await settle(setup.clock, 1, setup.provider)
    await trunk.stop(timeout=2)
    trunk.start()
    await settle(setup.clock, 3, setup.provider)
    assert trunk.status == "Registered"
    requests = setup.provider.transactions
    assert [r.cseq[0] for r in requests] == [1, 2, 3]
    assert len({r.call_id for r in requests}) == 1


# --- TCP --------------------------------------------------------------------------------------


@pytest.fixture
async def tcp_provider() -> AsyncIterator[Provider]:
    prov = Provider(Registrar())

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for frame in framer.feed(data):
                reply = prov.answer(frame)
                if reply is not None:
                    writer.write(reply)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    prov.port = int(server.sockets[0].getsockname()[1])
    yield prov
    server.close()


async def test_registers_over_tcp(
    stack: SipStack, tcp_provider: Provider, clock: FakeClock
) -> None:
    setup = Setup(stack, tcp_provider, clock)
    trunk = setup.trunk(transport="TCP")
    trunk.start()
    await settle(clock, 2, tcp_provider)
    assert trunk.status == "Registered"
    first = tcp_provider.transactions[0]
    assert first.top_via.transport == "TCP"
    assert first.headers.get("Contact") == f"<sip:{USER}@127.0.0.1:{stack.port};transport=tcp>"
    await trunk.stop(timeout=2)
    assert tcp_provider.transactions[-1].expires == 0


def test_fake_clock_sanity() -> None:
    clock = FakeClock()
    fired: list[int] = []
    clock.call_later(5, lambda: fired.append(5))
    cancelled = clock.call_later(1, lambda: fired.append(1))
    cancelled.cancel()
    assert clock.pending() == [5]
    clock.fire()
    assert fired == [5] and clock.now == 1005
