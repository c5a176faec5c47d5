"""MessageRouter: SIP MESSAGE store-and-forward and SendSms, against a real SQLite store and
scripted stand-ins for the SIP stack, the registrar, digest authentication and webhooks."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pypbx.messaging.smpp import SmppClosedError, SmppRejectedError, SmppSettings
from pypbx.messaging.sms_text import SmsTooLongError
from pypbx.notify import NotificationReply
from pypbx.pbx.auth import AuthResult
from pypbx.pbx.control import ApiExtensionError
from pypbx.pbx.messages import (
    SMPP_RECIPIENT,
    MessageRouter,
    MessageSettings,
    MessageTooLargeError,
    SmsDestinationNotFoundError,
    message_text,
)
from pypbx.pbx.registrar import Binding
from pypbx.pbx.replies import reply
from pypbx.sip.message import Headers, Request, Response, SipURI, Via
from pypbx.sip.transaction import RequestReceived, ServerTransaction, TransactionKey
from pypbx.store import ExtensionRecord, Store
from pypbx.store.engine import make_engine, normalize_url
from pypbx.store.records import MessageRecord

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PHONE = ("192.0.2.20", 5062)
URL = "http://app.example/sms"
DLR = "http://app.example/dlr"


# ---- stand-ins ---------------------------------------------------------------------------


@dataclass
class Sent:
    request: Request
    dest: tuple[str, int]
    transport: str
    on_response: Callable[[Response], None]
    on_timeout: Callable[[], None] | None

    def answer(self, status: int, reason: str | None = None) -> None:
        self.on_response(reply(self.request, status, reason))


class FakeStack:
    """Records responses and requests; the test answers requests through `Sent`."""

    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.requests: list[Sent] = []
        self.auto: int | None = None  # answer every request at once with this status

    def local_host(self, peer_ip: str) -> str:
        return "198.51.100.1"

    def new_via(self, peer_ip: str, transport: str) -> Via:
        return Via.new(transport, "198.51.100.1", 5060)

    def send_response(self, response: Response) -> None:
        self.responses.append(response)

    def send_request(
        self,
        request: Request,
        dest: tuple[str, int],
        transport: str,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        sent = Sent(request, dest, transport, on_response, on_timeout)
        self.requests.append(sent)
        if self.auto is not None:
            asyncio.get_running_loop().call_soon(sent.answer, self.auto)

    async def next_request(self, count: int = 1) -> list[Sent]:
        """Wait until `count` more requests than already taken have been sent."""
        for _ in range(200):
            if len(self.requests) >= count:
                taken, self.requests = self.requests[:count], self.requests[count:]
                return taken
            await asyncio.sleep(0.005)
        raise AssertionError(f"only {len(self.requests)} request(s) sent")


class FakeRegistrar:
    def __init__(self) -> None:
        self.by_ext: dict[str, list[Binding]] = {}

    def bindings(self, extension_id: str) -> list[Binding]:
        return list(self.by_ext.get(extension_id, []))

    def register(self, ext: str, port: int = PHONE[1], transport: str = "udp") -> None:
        self.by_ext.setdefault(ext, []).append(
            Binding(
                extension_id=ext,
                contact=f"sip:{ext}@{PHONE[0]}:{port}",
                source=(PHONE[0], port),
                transport=transport,
                expires_at=datetime.now(UTC) + timedelta(hours=1),
                call_id=f"reg-{ext}-{port}",
                cseq=1,
            )
        )


class FakeAuth:
    """Digest stand-in: `user` is the extension every request authenticates as (None: 407)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.user: str | None = "1000"

    async def authenticate(self, request: Request, *, proxy: bool) -> AuthResult:
        assert proxy
        if self.user is None:
            response = reply(request, 407)
            response.headers.add("Proxy-Authenticate", 'Digest realm="pbx", nonce="n"')
            return AuthResult(None, response)
        return AuthResult(await self.store.get_extension(self.user), None)


@dataclass
class Posted:
    url: str
    name: str
    fields: list[tuple[str, str]]
    key: str | None
    on_reply: Callable[[NotificationReply], None] | None

    def field(self, name: str) -> str:
        return dict(self.fields)[name]

    def answer(self, ok: bool = True, body: str = "", status: int | None = 200) -> None:
        error = None if ok else "HTTP 500"
        assert self.on_reply is not None
        self.on_reply(NotificationReply(ok, status if ok else 500, body, error, 0.01))


@dataclass
class FakeNotifier:
    posted: list[Posted] = field(default_factory=list)

    def post(
        self,
        url: str,
        name: str,
        fields: Any,
        *,
        key: str | None = None,
        on_reply: Callable[[NotificationReply], None] | None = None,
    ) -> None:
        self.posted.append(Posted(url, name, list(fields), key, on_reply))

    async def request(self, url: str, name: str, fields: Any, *, key: str | None = None) -> Any:
        raise AssertionError("no steering requests expected")

    def named(self, name: str) -> list[Posted]:
        return [p for p in self.posted if p.name == name]


@dataclass
class FakeActions:
    """Just the call-less verb the reply tests use."""

    sms: list[dict[str, Any]] = field(default_factory=list)

    async def send_sms(self, **kwargs: Any) -> None:
        self.sms.append(kwargs)


@dataclass
class World:
    router: MessageRouter
    store: Store
    stack: FakeStack
    registrar: FakeRegistrar
    auth: FakeAuth
    notifier: FakeNotifier
    actions: FakeActions


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, migrated once and copied for every test."""
    path = tmp_path_factory.mktemp("messages-db") / "pbx.db"

    async def migrate() -> None:
        await (await Store.open(f"sqlite+aiosqlite:///{path}")).close()

    asyncio.run(migrate())
    return path


@pytest.fixture
async def world(tmp_path: Path, migrated_db: Path) -> AsyncIterator[World]:
    shutil.copyfile(migrated_db, tmp_path / "pbx.db")
    # Already at the newest schema: skip Store.open's migration check, the slow part.
    store = Store(make_engine(normalize_url(f"sqlite+aiosqlite:///{tmp_path / 'pbx.db'}")))
    for ext in ("1000", "2000", "3000"):
        await store.add_extension(ExtensionRecord(ext, "SIP", password="pw"))
    await store.add_extension(ExtensionRecord("2500", "SIP", enabled=False))
    await store.add_extension(
        ExtensionRecord(
            "9994", "API", settings={"incoming_sms_url": URL, "allowed_users": ["alice"]}
        )
    )
    await store.add_extension(ExtensionRecord("9995", "API"))  # no URL at all
    await store.add_extension(ExtensionRecord("7000", "IVR"))
    stack, registrar, notifier, actions = (
        FakeStack(),
        FakeRegistrar(),
        FakeNotifier(),
        FakeActions(),
    )
    auth = FakeAuth(store)
    router = MessageRouter(
        stack,  # type: ignore[arg-type]
        store,
        registrar,  # type: ignore[arg-type]
        auth,  # type: ignore[arg-type]
        notifier,  # type: ignore[arg-type]
        MessageSettings(max_bytes=1000, attempt_timeout=5.0),
        actions=lambda: actions,  # type: ignore[arg-type,return-value]
    )
    try:
        yield World(router, store, stack, registrar, auth, notifier, actions)
    finally:
        await router.close()
        await store.close()


def message(
    to: str = "2000",
    body: bytes = "Grüße ☎".encode(),
    content_type: str | None = "text/plain;charset=UTF-8",
    **extra: str,
) -> RequestReceived:
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-m1;rport")
    headers.add("Max-Forwards", extra.pop("max_forwards", "70"))
    headers.add("From", '"Alice" <sip:1000@pbx.test>;tag=a1')
    headers.add("To", f"<sip:{to}@pbx.test>")
    headers.add("Call-ID", "msg-1@192.0.2.10")
    headers.add("CSeq", "1 MESSAGE")
    for name, value in extra.items():
        headers.add(name, value)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    request = Request("MESSAGE", SipURI.parse(f"sip:{to}@pbx.test"), headers, body)
    return RequestReceived(request, ("192.0.2.10", 5060), "udp", None)


async def only_state(w: World) -> MessageRecord:
    [row] = await stored(w)
    return row


async def stored(w: World) -> list[MessageRecord]:
    ids = {*await w.store.pending_recipients()}
    found: list[MessageRecord] = []
    for ext in sorted(ids):
        found += await w.store.pending_messages(ext, datetime.now(UTC))
    return found


async def settle(w: World) -> None:
    """Let delivery workers and spawned tasks run to their next wait."""
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


async def posted(w: World, count: int = 1) -> list[Any]:
    """The notifications once `count` have come: a gateway callback reaches the notifier
    through a task and a store write, which a loaded machine may take longer for than
    settle() waits."""
    for _ in range(500):
        if len(w.notifier.posted) >= count:
            break
        await asyncio.sleep(0.01)
    return w.notifier.posted


def statuses(w: World) -> list[tuple[int, str]]:
    return [(r.status, r.reason) for r in w.stack.responses]


# ---- phone to phone ----------------------------------------------------------------------


async def test_message_to_registered_phone_is_accepted_and_relayed(world: World) -> None:
    world.registrar.register("2000")
    await world.router.on_message(message())
    assert statuses(world) == [(202, "Accepted")]
    assert world.stack.responses[0].to_addr.tag  # final responses carry a To tag

    [sent] = await world.stack.next_request()
    out = sent.request
    assert (out.method, str(out.uri), sent.dest, sent.transport) == (
        "MESSAGE",
        "sip:2000@192.0.2.20:5062",
        PHONE,
        "udp",
    )
    assert str(out.from_addr.uri) == "sip:1000@198.51.100.1"
    assert out.from_addr.display_name == "Alice" and out.from_addr.tag
    assert str(out.to_addr) == "<sip:2000@198.51.100.1>"
    assert out.cseq == (1, "MESSAGE")
    assert out.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert out.body == "Grüße ☎".encode()
    assert out.headers.get("Date", "").endswith(" GMT")
    assert out.call_id != "msg-1@192.0.2.10"  # pypbx's own request, not the phone's

    sent.answer(200)
    await settle(world)
    assert await stored(world) == []
    assert world.notifier.posted == []  # no DeliveryReportURL for phone messages


async def test_every_phone_of_the_recipient_gets_it_one_success_is_enough(world: World) -> None:
    world.registrar.register("2000", 5062)
    world.registrar.register("2000", 5064, transport="tcp")
    await world.router.on_message(message())
    a, b = await world.stack.next_request(2)
    assert {a.dest, b.dest} == {(PHONE[0], 5062), (PHONE[0], 5064)}
    assert {a.transport, b.transport} == {"udp", "tcp"}
    a.answer(480)
    b.answer(200)
    await settle(world)
    assert await stored(world) == []


async def test_offline_recipient_keeps_the_message_until_it_registers(world: World) -> None:
    await world.router.on_message(message())
    assert statuses(world) == [(202, "Accepted")]
    await settle(world)
    assert world.stack.requests == []
    row = await only_state(world)
    assert (row.sender, row.sender_name, row.recipient, row.state) == (
        "1000",
        "Alice",
        "2000",
        "pending",
    )
    assert GUID.fullmatch(row.id)
    assert timedelta(days=6, hours=23) < row.expires_at - row.created_at <= timedelta(days=7)

    world.registrar.register("2000")
    world.stack.auto = 200
    await world.router.deliver_pending("2000")
    assert await stored(world) == []
    got = await world.store.get_message(row.id)
    assert got is not None and (got.state, got.attempts) == ("delivered", 1)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(480, "Temporarily Unavailable"), (408, "Request Timeout"), (503, "Service Unavailable")],
)
async def test_temporary_failures_keep_the_message(world: World, status: int, reason: str) -> None:
    world.registrar.register("2000")
    await world.router.on_message(message())
    [sent] = await world.stack.next_request()
    sent.answer(status)
    await settle(world)
    row = await only_state(world)
    assert (row.state, row.attempts, row.reason) == ("pending", 1, f"{status} {reason}")
    # the phone re-registers: a new attempt, which succeeds
    world.stack.auto = 200
    await world.router.deliver_pending("2000")
    got = await world.store.get_message(row.id)
    assert got is not None and (got.state, got.attempts) == ("delivered", 2)


async def test_no_answer_counts_as_timeout(world: World) -> None:
    world.registrar.register("2000")
    await world.router.on_message(message())
    [sent] = await world.stack.next_request()
    assert sent.on_timeout is not None
    sent.on_timeout()
    await settle(world)
    assert (await only_state(world)).reason == "408 Request Timeout"


async def test_silent_transaction_ends_at_the_attempt_timeout(world: World) -> None:
    world.router.settings = MessageSettings(attempt_timeout=0.05)
    world.registrar.register("2000")
    await world.router.on_message(message())
    await world.stack.next_request()  # never answered, not even by a timeout
    await asyncio.sleep(0.2)
    assert (await only_state(world)).reason == "408 Request Timeout"


async def test_permanent_failure_of_every_phone_fails_the_message(world: World) -> None:
    world.registrar.register("2000")
    await world.router.on_message(message(content_type="application/vnd.test"))
    [sent] = await world.stack.next_request()
    sent.answer(415)
    await settle(world)
    assert await stored(world) == []
    [row] = [await world.store.get_message(sent_id) for sent_id in await _all_ids(world)]
    assert row is not None and (row.state, row.reason) == ("failed", "415 Unsupported Media Type")


async def _all_ids(w: World) -> list[str]:
    async with w.store._engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT id FROM messages ORDER BY created_at")
        return [r[0] for r in result]


async def test_a_temporary_failure_holds_back_later_messages(world: World) -> None:
    await world.router.on_message(message(body=b"first"))
    await world.router.on_message(message(body=b"second"))
    await settle(world)  # their wakes found no phone
    world.registrar.register("2000")
    delivery = asyncio.ensure_future(world.router.deliver_pending("2000"))
    [first] = await world.stack.next_request()
    assert first.request.body == b"first"
    first.answer(486)
    await delivery
    assert world.stack.requests == []  # "second" must not overtake "first"

    world.stack.auto = 200
    await world.router.deliver_pending("2000")
    await settle(world)
    assert await stored(world) == []


async def test_messages_go_out_in_order_one_at_a_time(world: World) -> None:
    for text in (b"1", b"2", b"3"):
        await world.router.on_message(message(body=text))
    world.registrar.register("2000")
    world.router.wake("2000")
    world.router.wake("2000")  # wakes coalesce into the one worker
    bodies = []
    for _ in range(3):
        [sent] = await world.stack.next_request()
        assert world.stack.requests == []
        bodies.append(sent.request.body)
        sent.answer(200)
    assert bodies == [b"1", b"2", b"3"]


async def test_binary_content_and_empty_body_are_relayed_as_is(world: World) -> None:
    world.registrar.register("2000")
    await world.router.on_message(
        message(body=b"\x00\xff", content_type="application/octet-stream")
    )
    [sent] = await world.stack.next_request()
    assert (sent.request.body, sent.request.headers.get("Content-Type")) == (
        b"\x00\xff",
        "application/octet-stream",
    )
    sent.answer(200)
    await settle(world)
    await world.router.on_message(message(body=b"", content_type=None))
    [sent] = await world.stack.next_request()
    assert (sent.request.body, sent.request.headers.get("Content-Type")) == (b"", None)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"to": "4711"}, (404, "Not Found")),
        ({"to": "2500"}, (404, "Not Found")),  # disabled
        ({"to": "7000"}, (404, "Not Found")),  # not a messaging extension type
        ({"body": b"x" * 1001}, (413, "Request Entity Too Large")),
        ({"content_type": None}, (400, "Missing Content-Type")),
        ({"max_forwards": "0"}, (483, "Too Many Hops")),
        ({"max_forwards": "x"}, (400, "Bad Max-Forwards")),
        ({"Require": "100rel"}, (420, "Bad Extension")),
        ({"to": "9995"}, (480, "Temporarily Unavailable")),  # API extension without URL
        ({"to": "9994", "content_type": "image/png"}, (415, "Unsupported Media Type")),
    ],
)
async def test_refusals(world: World, kwargs: dict[str, Any], expected: tuple[int, str]) -> None:
    world.registrar.register(kwargs.get("to", "2000"))
    await world.router.on_message(message(**kwargs))
    assert statuses(world) == [expected]
    await settle(world)
    assert world.stack.requests == [] and world.notifier.posted == []
    assert await _all_ids(world) == []
    response = world.stack.responses[0]
    if expected[0] == 420:
        assert response.headers.get("Unsupported") == "100rel"
    if expected[0] == 415:
        assert response.headers.get("Accept") == "text/plain"


async def test_unauthenticated_message_is_challenged_and_not_stored(world: World) -> None:
    world.auth.user = None
    await world.router.on_message(message())
    assert statuses(world) == [(407, "Proxy Authentication Required")]
    assert world.stack.responses[0].headers.get("Proxy-Authenticate")
    assert await _all_ids(world) == []


async def test_the_sender_is_the_authenticated_extension_not_the_from_header(
    world: World,
) -> None:
    world.auth.user = "3000"  # From says 1000
    world.registrar.register("2000")
    await world.router.on_message(message())
    [sent] = await world.stack.next_request()
    assert sent.request.from_addr.uri.user == "3000"


# ---- phone to API extension ------------------------------------------------------------


async def test_message_to_api_extension_becomes_incoming_sms(world: World) -> None:
    await world.router.on_message(
        message(
            to="9994", content_type="text/plain; charset=latin-1", body="Grüße".encode("latin-1")
        )
    )
    assert statuses(world) == [(202, "Accepted")]
    [note] = world.notifier.posted
    assert (note.url, note.name) == (URL, "IncomingSMS")
    assert [name for name, _ in note.fields] == [
        "ApiExtension",
        "SmsId",
        "Sender",
        "Recipient",
        "Message",
        "ReceivedTime",
    ]
    assert (note.field("ApiExtension"), note.field("Sender"), note.field("Recipient")) == (
        "9994",
        "1000",
        "9994",
    )
    assert note.field("Message") == "Grüße"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", note.field("ReceivedTime"))
    assert GUID.fullmatch(note.field("SmsId")) and note.key == note.field("SmsId")

    note.answer(body="<Response><SendSms Recipient='2000'>Thanks!</SendSms></Response>")
    await settle(world)
    row = await world.store.get_message(note.field("SmsId"))
    assert row is not None and row.state == "delivered"
    # the reply's OzML ran, call-less, for the API extension
    assert world.actions.sms == [
        {
            "recipient": "2000",
            "message": "Thanks!",
            "sender": None,
            "api_extension": "9994",
            "delivery_report_url": None,
        }
    ]


async def test_incoming_sms_that_fails_marks_the_message_failed(world: World) -> None:
    await world.router.on_message(message(to="9994"))
    [note] = world.notifier.posted
    note.answer(ok=False)
    await settle(world)
    row = await world.store.get_message(note.field("SmsId"))
    assert row is not None and (row.state, row.reason) == ("failed", "HTTP 500")
    assert world.actions.sms == []


# ---- SendSms ---------------------------------------------------------------------------


async def test_send_sms_to_a_phone_reports_delivery(world: World) -> None:
    world.registrar.register("2000")
    sms_id = await world.router.send_sms("9994", None, "2000", "Your code: 1234", DLR)
    assert GUID.fullmatch(sms_id)
    [sent] = await world.stack.next_request()
    assert str(sent.request.from_addr.uri) == "sip:9994@198.51.100.1"
    assert sent.request.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert sent.request.body == b"Your code: 1234"
    sent.answer(200)
    await settle(world)

    [report] = world.notifier.posted
    assert (report.url, report.name, report.key) == (DLR, "SMSDeliveryReport", sms_id)
    assert [name for name, _ in report.fields] == [
        "SmsId",
        "Recipient",
        "Sender",
        "DeliveryStatus",
        "DeliveryTime",
        "ApiExtension",
    ]
    assert dict(report.fields) | {"DeliveryTime": "t"} == {
        "SmsId": sms_id,
        "Recipient": "2000",
        "Sender": "9994",
        "DeliveryStatus": "Delivered",
        "DeliveryTime": "t",
        "ApiExtension": "9994",
    }
    row = await world.store.get_message(sms_id)
    assert row is not None and row.state == "delivered"


async def test_send_sms_with_sender_and_recipient_domain(world: World) -> None:
    world.registrar.register("2000")
    sms_id = await world.router.send_sms("9994", "+3612#5", "2000@pbx.example", "hi", None)
    [sent] = await world.stack.next_request()
    assert str(sent.request.from_addr.uri) == "sip:+3612%235@198.51.100.1"
    sent.answer(403)
    await settle(world)
    row = await world.store.get_message(sms_id)
    assert row is not None
    assert (row.state, row.dialed, row.sender, row.reason) == (
        "failed",
        "2000@pbx.example",
        "+3612#5",
        "403 Forbidden",
    )
    assert world.notifier.posted == []  # no DeliveryReportURL


async def test_send_sms_failure_is_reported(world: World) -> None:
    world.registrar.register("2000")
    sms_id = await world.router.send_sms("9994", None, "2000", "hi", DLR)
    [sent] = await world.stack.next_request()
    sent.answer(488)
    await settle(world)
    [report] = world.notifier.posted
    assert (report.field("SmsId"), report.field("DeliveryStatus")) == (sms_id, "Failed")


async def test_send_sms_to_offline_phone_is_stored(world: World) -> None:
    sms_id = await world.router.send_sms("9994", None, "2000", "later", DLR)
    await settle(world)
    assert world.stack.requests == [] and world.notifier.posted == []
    row = await world.store.get_message(sms_id)
    assert row is not None and (row.state, row.api_extension, row.report_url) == (
        "pending",
        "9994",
        DLR,
    )


async def test_send_sms_to_api_extension_is_incoming_sms(world: World) -> None:
    sms_id = await world.router.send_sms("9994", "555", "9994", "loop", DLR)
    [note] = world.notifier.posted
    assert (note.name, note.field("SmsId"), note.field("Sender"), note.field("Message")) == (
        "IncomingSMS",
        sms_id,
        "555",
        "loop",
    )
    note.answer()
    await settle(world)
    [_, report] = world.notifier.posted
    assert (report.name, report.field("DeliveryStatus")) == ("SMSDeliveryReport", "Delivered")


@pytest.mark.parametrize("api_extension", ["4711", "2000", "7000"])
async def test_send_sms_needs_an_api_extension(world: World, api_extension: str) -> None:
    with pytest.raises(ApiExtensionError):
        await world.router.send_sms(api_extension, None, "2000", "hi", None)


async def test_send_sms_checks_the_users_permission(world: World) -> None:
    with pytest.raises(ApiExtensionError):
        await world.router.send_sms("9994", None, "2000", "hi", None, username="bob")
    assert GUID.fullmatch(
        await world.router.send_sms("9994", None, "2000", "hi", None, username="alice")
    )


@pytest.mark.parametrize("recipient", ["+36201234567", "4711", "2500", "9995", "7000"])
async def test_send_sms_without_a_route(world: World, recipient: str) -> None:
    with pytest.raises(SmsDestinationNotFoundError):
        await world.router.send_sms("9994", None, recipient, "hi", DLR)
    assert await _all_ids(world) == []


async def test_send_sms_too_large(world: World) -> None:
    with pytest.raises(MessageTooLargeError, match=r"^message larger than 1000 bytes$"):
        await world.router.send_sms("9994", None, "2000", "é" * 501, None)


# ---- expiry, restart -------------------------------------------------------------------


async def test_expired_messages_are_dropped_and_reported(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    sms_id = await world.router.send_sms("9994", None, "2000", "too late", DLR)
    await world.router.on_message(message())
    caplog.set_level(logging.WARNING, logger="pypbx.pbx.messages")
    later = datetime.now(UTC) + timedelta(days=7, seconds=1)
    await world.router.sweep(later)
    assert await world.store.pending_recipients() == []
    [report] = world.notifier.posted
    assert (report.field("SmsId"), report.field("DeliveryStatus")) == (sms_id, "Failed")
    expired = [r for r in caplog.records if "expired undelivered" in r.getMessage()]
    assert len(expired) == 2
    assert expired[0].getMessage() == (
        f"message {sms_id} from 9994 for 2000 expired undelivered after 0 attempt(s): dropped"
    )
    row = await world.store.get_message(sms_id)
    assert row is not None and row.state == "expired"
    # a late registration delivers nothing
    world.registrar.register("2000")
    await world.router.deliver_pending("2000")
    assert world.stack.requests == []
    # final states are forgotten after the retention
    await world.router.sweep(later + timedelta(days=31))
    assert await _all_ids(world) == []


async def test_start_delivers_what_waited_across_a_restart(world: World) -> None:
    await world.router.on_message(message(to="2000"))
    await world.router.on_message(message(to="3000"))
    world.registrar.register("2000")  # 3000 stays offline
    world.stack.auto = 200
    await world.router.start()
    await settle(world)
    assert [r.recipient for r in await stored(world)] == ["3000"]


async def test_after_register_wakes_delivery(world: World) -> None:
    await world.router.on_message(message())
    await settle(world)
    world.registrar.register("2000")
    world.stack.auto = 200
    register = message(to="2000")  # only its To user and the final response matter
    await world.router.after_register(register)  # no transaction: not known to be bound
    await settle(world)
    assert len(await stored(world)) == 1

    txn = answered(register.request, reply(register.request, 401))
    await world.router.after_register(replace(register, transaction=txn))
    await settle(world)
    assert len(await stored(world)) == 1

    txn.last_response = reply(register.request, 200)
    await world.router.after_register(replace(register, transaction=txn))
    await settle(world)
    assert await stored(world) == []


def answered(request: Request, response: Response) -> ServerTransaction:
    """A server transaction of ``request`` whose last response is ``response``."""
    key = TransactionKey("z9hG4bK-test", "192.0.2.10:5060", request.method)
    txn = ServerTransaction(key, request, ("192.0.2.10", 5060), "udp")
    txn.last_response = response
    return txn


async def test_closed_router_delivers_nothing(world: World) -> None:
    await world.router.close()
    world.registrar.register("2000")
    await world.router.on_message(message())
    await settle(world)
    assert world.stack.requests == []
    assert len(await stored(world)) == 1  # still there for the next start


# ---- settings, text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"expiry": 0}, "expiry must be positive, got 0"),
        ({"retention": -1.0}, "retention must be positive, got -1.0"),
        ({"max_bytes": 0}, "max_bytes must be positive, got 0"),
        ({"sweep_interval": 0}, "sweep_interval must be positive, got 0"),
    ],
)
def test_settings_are_checked(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(error)}$"):
        MessageSettings(**kwargs)


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/plain", "ü".encode(), "ü"),
        ("text/plain;charset=UTF-8", "ü".encode(), "ü"),
        ('Text/Plain; charset="ISO-8859-1"', b"\xfc", "ü"),
        ("text/html; charset=no-such-charset", b"<b>x</b>", "<b>x</b>"),
        ("text/plain", b"\xff", "\ufffd"),
        ("", b"", ""),
        ("application/json", b"{}", None),
        ("message/cpim", b"x", None),
        ("", b"x", None),
    ],
)
def test_message_text(content_type: str, body: bytes, text: str | None) -> None:
    assert message_text(content_type, body) == text


# ---- SMS to and from outside numbers (SMPP gateway) --------------------------------------


@dataclass
class FakeGateway:
    """SmppGateway stand-in: every submit waits on a future the test resolves."""

    settings: Any = field(default_factory=lambda: SmppSettings(host="smsc", source_addr="+3611"))
    on_receipt: Callable[[str, str], None] | None = None
    on_incoming: Callable[[str, str, str], None] | None = None
    submits: list[tuple[str | None, str, str, asyncio.Future[str]]] = field(default_factory=list)

    async def submit(self, sender: str | None, recipient: str, text: str) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.submits.append((sender, recipient, text, future))
        return await future


@pytest.fixture
def gateway(world: World) -> FakeGateway:
    fake = FakeGateway()
    world.router.attach_gateway(fake, incoming_api_extension="9994")  # type: ignore[arg-type]
    return fake


async def test_send_sms_to_an_outside_number_goes_to_the_gateway(
    world: World, gateway: FakeGateway
) -> None:
    sms_id = await world.router.send_sms("9994", None, "+36201234567", "code 4711", DLR)
    await settle(world)
    [(sender, recipient, text, future)] = gateway.submits
    assert (sender, recipient, text) == ("+3611", "+36201234567", "code 4711")
    row = await world.store.get_message(sms_id)
    assert row is not None
    assert (row.recipient, row.dialed, row.state, row.remote_id) == (
        SMPP_RECIPIENT,
        "+36201234567",
        "pending",
        None,
    )
    future.set_result("abc1")
    await settle(world)
    assert await world.store.message_by_remote_id("abc1") is not None
    assert world.notifier.posted == []

    assert gateway.on_receipt is not None
    gateway.on_receipt("abc1", "delivered")
    gateway.on_receipt("abc1", "delivered")  # reported once only
    await settle(world)
    [report] = await posted(world)
    assert report.url == DLR
    assert (report.field("SmsId"), report.field("Recipient"), report.field("Sender")) == (
        sms_id,
        "+36201234567",
        "+3611",
    )
    assert report.field("DeliveryStatus") == "Delivered"
    row = await world.store.get_message(sms_id)
    assert row is not None and row.state == "delivered"


async def test_a_receipt_before_the_id_is_stored_is_not_lost(
    world: World, gateway: FakeGateway
) -> None:
    sms_id = await world.router.send_sms("9994", "+3699", "0620", "hi", DLR)
    await settle(world)
    assert gateway.on_receipt is not None
    gateway.on_receipt("quick", "expired")
    await settle(world)
    gateway.submits[0][3].set_result("quick")
    await settle(world)
    [report] = await posted(world)
    assert (report.field("SmsId"), report.field("DeliveryStatus")) == (sms_id, "Failed")
    row = await world.store.get_message(sms_id)
    assert row is not None and (row.state, row.sender) == ("expired", "+3699")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (SmppRejectedError(0x0B), "SMSC rejected the message"),
        (SmsTooLongError("too many parts"), "message too long"),
        (ValueError("recipient must not be empty"), "recipient must not be empty"),
    ],
)
async def test_refused_submits_fail_the_message(
    world: World, gateway: FakeGateway, error: Exception, reason: str
) -> None:
    sms_id = await world.router.send_sms("9994", None, "+36201234567", "x", DLR)
    await settle(world)
    gateway.submits[0][3].set_exception(error)
    await settle(world)
    [report] = await posted(world)
    assert report.field("DeliveryStatus") == "Failed"
    row = await world.store.get_message(sms_id)
    assert row is not None and row.state == "failed" and row.reason.startswith(reason)


async def test_unsent_sms_is_submitted_again_at_start(world: World, gateway: FakeGateway) -> None:
    sms_id = await world.router.send_sms("9994", None, "+36201234567", "again", DLR)
    await settle(world)
    gateway.submits[0][3].set_exception(SmppClosedError("stopped"))
    await settle(world)
    row = await world.store.get_message(sms_id)
    assert row is not None and row.state == "pending"
    assert world.notifier.posted == []

    await world.router.start()
    await settle(world)
    assert [s[:3] for s in gateway.submits[1:]] == [("+3611", "+36201234567", "again")]


async def test_send_sms_to_a_disabled_extension_is_not_sent_out(
    world: World, gateway: FakeGateway
) -> None:
    with pytest.raises(SmsDestinationNotFoundError):
        await world.router.send_sms("9994", None, "2500", "hi", DLR)
    assert gateway.submits == []


@pytest.mark.parametrize(
    ("recipient", "api_extension"),
    [("9994", "9994"), ("+9994", "9994"), ("+3611", "9994")],
)
async def test_incoming_sms_goes_to_an_api_extension(
    world: World, gateway: FakeGateway, recipient: str, api_extension: str
) -> None:
    assert gateway.on_incoming is not None
    gateway.on_incoming("+36201111111", recipient, "hello ☺")
    [note] = await posted(world)
    assert (note.url, note.name) == (URL, "IncomingSMS")
    assert (note.field("ApiExtension"), note.field("Recipient"), note.field("Message")) == (
        api_extension,
        recipient,
        "hello ☺",
    )
    assert note.field("Sender") == "+36201111111"


async def test_incoming_sms_without_a_taker_is_dropped(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeGateway()
    world.router.attach_gateway(fake)  # type: ignore[arg-type]
    assert fake.on_incoming is not None
    with caplog.at_level(logging.WARNING):
        fake.on_incoming("+36201111111", "+3611", "anyone?")
        await settle(world)
    assert world.notifier.posted == []
    assert "SMS from +36201111111 to +3611 dropped: no API extension takes it" in caplog.text


# ---- REGISTER without store queries ------------------------------------------------------


def count_queries(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every pending_messages / extension lookup the router makes."""
    calls: list[str] = []
    store = world.store
    for name in ("pending_messages", "get_extension", "find_extension_by_auth_name"):
        original = getattr(store, name)

        async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return await _original(*args)

        monkeypatch.setattr(store, name, counted)
    return calls


def registered_with_200(world: World, ext: str) -> RequestReceived:
    world.registrar.register(ext)
    register = message(to=ext)
    return replace(register, transaction=answered(register.request, reply(register.request, 200)))


async def test_register_with_nothing_waiting_costs_no_store_query(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_queries(world, monkeypatch)
    await world.router.after_register(registered_with_200(world, "2000"))
    await settle(world)
    assert calls == []


async def test_a_delivered_round_forgets_the_extension(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.stack.auto = 200
    await world.router.on_message(message(to="2000"))  # 2000 offline: kept
    await settle(world)
    event = registered_with_200(world, "2000")
    await world.router.after_register(event)
    await settle(world)
    assert await stored(world) == []
    calls = count_queries(world, monkeypatch)
    await world.router.after_register(event)  # nothing left for 2000: no query
    await settle(world)
    assert calls == []


async def test_a_message_kept_across_a_restart_goes_out_at_the_next_register(
    world: World,
) -> None:
    await world.router.on_message(message(to="3000"))  # 3000 offline
    await settle(world)
    restarted = MessageRouter(
        world.stack,  # type: ignore[arg-type]
        world.store,
        world.registrar,  # type: ignore[arg-type]
        world.auth,  # type: ignore[arg-type]
        world.notifier,  # type: ignore[arg-type]
        MessageSettings(max_bytes=1000, attempt_timeout=5.0),
    )
    try:
        await restarted.start()  # 3000 is still offline: nothing to deliver yet
        await settle(world)
        assert [r.recipient for r in await stored(world)] == ["3000"]
        world.stack.auto = 200
        await restarted.after_register(registered_with_200(world, "3000"))
        await settle(world)
        assert await stored(world) == []
    finally:
        await restarted.close()
