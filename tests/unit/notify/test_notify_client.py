"""Notifier against a real local aiohttp server that records every request it gets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from pypbx.notify import NotificationReply, Notifier, NotifySettings, verify_signature

FAST = NotifySettings(timeout=2.0, retry_delay=0.01)


@dataclass
class Seen:
    """One request as the application saw it."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes
    start: float
    end: float = 0.0

    @property
    def fields(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode("ascii"), keep_blank_values=True)

    @property
    def field(self) -> dict[str, str]:
        return dict(self.fields)


Handler = Callable[[web.Request, Seen], Awaitable[web.StreamResponse]]


async def default_handler(request: web.Request, seen: Seen) -> web.StreamResponse:
    return web.Response(text="<Response></Response>")


@dataclass
class App:
    """The business application: per-path handlers, a log of requests, a release switch."""

    base: str = ""
    seen: list[Seen] = field(default_factory=list)
    routes: dict[str, Handler] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return self.base.replace("//", f"//{userinfo}@", 1) + path if userinfo else self.base + path

    def on(self, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes[path] = handler
            return handler

        return register

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path_qs.split("?")[0] == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        seen = Seen(
            request.method, request.raw_path, request.headers, await request.read(), loop.time()
        )
        self.seen.append(seen)
        try:
            return await self.routes.get(request.path, default_handler)(request, seen)
        finally:
            seen.end = loop.time()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    application = App()
    web_app = web.Application()
    web_app.router.add_route("*", "/{tail:.*}", application.handle)
    runner = web.AppRunner(web_app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    application.base = f"http://{host}:{port}"
    try:
        yield application
    finally:
        application.release.set()
        await runner.cleanup()


@pytest.fixture
async def make_notifier() -> AsyncIterator[Callable[..., Notifier]]:
    """`make_notifier(settings, **kwargs)`; every notifier is closed at teardown."""
    made: list[Notifier] = []

    def make(settings: NotifySettings = FAST, **kwargs: Any) -> Notifier:
        notifier = Notifier(settings, **kwargs)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.close(0)


@pytest.fixture
async def notifier(make_notifier: Callable[..., Notifier]) -> AsyncIterator[Notifier]:
    n = make_notifier()
    yield n
    await n.close(0.5)


class Replies:
    """An on_reply callback that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[NotificationReply] = []

    def __call__(self, reply: NotificationReply) -> None:
        self.got.append(reply)


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blocked(app: App) -> Handler:
    async def handler(request: web.Request, seen: Seen) -> web.StreamResponse:
        await app.release.wait()
        return web.Response(text="")

    return handler


def status(code: int, text: str = "") -> Handler:
    async def handler(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(status=code, text=text)

    return handler


# --- request form (spec 2.1) -------------------------------------------------------------------


async def test_body_has_name_first_then_fields_in_order(app: App, notifier: Notifier) -> None:
    reply = await notifier.request(
        app.url(),
        "IncomingCall",
        [
            ("CallId", "Kq7Zx2"),
            ("NotificationName", "Forged"),
            ("Caller", "1442"),
            ("Message", "héllo w&rld=1"),
            ("Empty", ""),
        ],
    )
    assert reply.ok, reply
    (seen,) = app.seen
    assert seen.method == "POST"
    assert seen.body == (
        b"NotificationName=IncomingCall&CallId=Kq7Zx2&Caller=1442"
        b"&Message=h%C3%A9llo+w%26rld%3D1&Empty="
    )
    assert seen.fields[0] == ("NotificationName", "IncomingCall")
    assert seen.field["Message"] == "héllo w&rld=1"


async def test_mapping_fields(app: App, notifier: Notifier) -> None:
    await notifier.request(app.url(), "GoTo", {"CallId": "c1", "ApiExtension": "9994"})
    assert app.seen[0].fields == [
        ("NotificationName", "GoTo"),
        ("CallId", "c1"),
        ("ApiExtension", "9994"),
    ]


async def test_headers_are_exactly_the_spec_set(app: App, notifier: Notifier) -> None:
    await notifier.request(app.url(), "CallChanged", [("CallId", "c1")])
    headers = app.seen[0].headers
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Cache-Control"] == "no-store,no-cache"
    assert headers["Pragma"] == "no-cache"
    assert headers["User-Agent"] == "pypbx/0.1.0"
    assert headers["Content-Length"] == str(len(app.seen[0].body))
    assert {h.lower() for h in headers} == {
        "host",
        "content-type",
        "content-length",
        "cache-control",
        "pragma",
        "user-agent",
    }


async def test_query_string_is_kept(app: App, notifier: Notifier) -> None:
    query = "AppLocation=Main%20St&AppDate=2013-07-01+10%3A00&x=%7E&flag"
    reply = await notifier.request(app.url(f"/cc.php?{query}"), "CallConnected", [("CallId", "c")])
    assert reply.ok
    assert app.seen[0].path_qs == f"/cc.php?{query}"
    assert app.seen[0].field == {"NotificationName": "CallConnected", "CallId": "c"}


async def test_url_credentials_become_basic_auth_and_stay_out_of_logs(
    app: App, notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pypbx.notify")
    url = app.url("/hook?a=1", userinfo="app%40corp:s3cr%3At")
    reply = await notifier.request(url, "IncomingCall", [("CallId", "c")])
    assert reply.ok
    expected = "Basic " + base64.b64encode(b"app@corp:s3cr:t").decode()
    assert app.seen[0].headers["Authorization"] == expected
    assert app.seen[0].path_qs == "/hook?a=1"
    assert f"IncomingCall to {app.base}/hook?a=1 (attempt 1/1): 200" in caplog.text
    assert "s3cr" not in caplog.text
    assert "corp" not in caplog.text


async def test_no_signature_without_secret(app: App, notifier: Notifier) -> None:
    await notifier.request(app.url(), "CallChanged", [])
    assert "X-Pypbx-Signature" not in app.seen[0].headers
    assert "X-Pypbx-Timestamp" not in app.seen[0].headers


async def test_signature_is_verifiable(app: App, make_notifier: Callable[..., Notifier]) -> None:
    settings = NotifySettings(timeout=2.0, secret="shh")
    notifier = make_notifier(settings, clock=lambda: 1700000000.25)
    try:
        await notifier.request(app.url(), "CallChanged", [("CallId", "c1")])
    finally:
        await notifier.close()
    seen = app.seen[0]
    timestamp = seen.headers["X-Pypbx-Timestamp"]
    signature = seen.headers["X-Pypbx-Signature"]
    assert timestamp == "1700000000"
    mac = hmac.new(b"shh", b"1700000000." + seen.body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={mac}"
    assert verify_signature("shh", timestamp, seen.body, signature, now=1700000001.0)
    assert not verify_signature("shh", timestamp, seen.body + b"x", signature, now=1700000001.0)


# --- replies (spec 2.2) --------------------------------------------------------------------------


async def test_reply_body_is_returned(app: App, notifier: Notifier) -> None:
    @app.on("/ozml")
    async def ozml(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(text="<Response><Speak>Hi</Speak></Response>", content_type="text/html")

    reply = await notifier.request(app.url("/ozml"), "IncomingCall", [])
    assert reply == NotificationReply(
        ok=True,
        status=200,
        body="<Response><Speak>Hi</Speak></Response>",
        error=None,
        elapsed=reply.elapsed,
    )
    assert 0 < reply.elapsed < 2


async def test_non_2xx_is_a_failure_with_body(app: App, notifier: Notifier) -> None:
    app.routes["/missing"] = status(404, "nope")
    reply = await notifier.request(app.url("/missing"), "IncomingCall", [])
    assert (reply.ok, reply.status, reply.error, reply.body) == (
        False,
        404,
        "HTTP 404 Not Found",
        "nope",
    )


async def test_unknown_status_code(app: App, notifier: Notifier) -> None:
    app.routes["/odd"] = status(599)
    reply = await notifier.request(app.url("/odd"), "IncomingCall", [])
    assert (reply.ok, reply.status, reply.error) == (False, 599, "HTTP 599")


async def test_declared_charset_is_used(app: App, notifier: Notifier) -> None:
    @app.on("/latin1")
    async def latin1(request: web.Request, seen: Seen) -> web.StreamResponse:
        body = "<Speak>Größe</Speak>".encode("latin-1")
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=ISO-8859-1"})

    reply = await notifier.request(app.url("/latin1"), "IncomingCall", [])
    assert reply.body == "<Speak>Größe</Speak>"


@pytest.mark.parametrize("content_type", ["text/html", "text/html; charset=no-such-codec"])
async def test_bad_utf8_is_replaced(app: App, notifier: Notifier, content_type: str) -> None:
    @app.on("/bytes")
    async def raw(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(body=b"<Speak>a\xffb</Speak>", headers={"Content-Type": content_type})

    reply = await notifier.request(app.url("/bytes"), "IncomingCall", [])
    assert reply.ok
    assert reply.body == "<Speak>a\ufffdb</Speak>"


async def test_timeout_fails_quickly(app: App, make_notifier: Callable[..., Notifier]) -> None:
    app.routes["/slow"] = blocked(app)
    notifier = make_notifier(NotifySettings(timeout=0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await notifier.request(app.url("/slow"), "IncomingCall", [])
    took = loop.time() - started
    assert (reply.ok, reply.status, reply.error) == (False, None, "timeout after 0.3 s")
    assert 0.25 < reply.elapsed < 1.0
    assert took < 1.0
    await notifier.close(0)


async def test_connection_refused_is_a_value(notifier: Notifier) -> None:
    reply = await notifier.request(f"http://127.0.0.1:{unused_port()}/x", "IncomingCall", [])
    assert not reply.ok and reply.status is None
    assert reply.error is not None and reply.error.startswith("connection failed: ")


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://app.example/x", "invalid URL: unsupported URL scheme 'ftp'"),
        ("", "invalid URL: unsupported URL scheme ''"),
        ("http:///nohost", "invalid URL: URL has no host"),
        (
            "http://u:pw@h:bad/",
            "invalid URL: malformed URL: Invalid URL: port can't be converted to integer",
        ),
    ],
)
async def test_invalid_url_is_a_value(
    notifier: Notifier, url: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pypbx.notify")
    reply = await notifier.request(url, "IncomingCall", [])
    assert reply == NotificationReply(False, None, "", error, 0.0)
    assert "pw@" not in caplog.text


async def test_oversized_reply_is_a_failure(
    app: App, make_notifier: Callable[..., Notifier]
) -> None:
    @app.on("/big")
    async def big(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(text="x" * int(request.query["n"]))

    @app.on("/stream")
    async def stream(request: web.Request, seen: Seen) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to judge by
        await response.prepare(request)
        for _ in range(int(request.query["n"]) // 10):
            await response.write(b"y" * 10)
        await response.write_eof()
        return response

    notifier = make_notifier(NotifySettings(timeout=2.0, max_reply_bytes=100))
    for path in ("/big", "/stream"):
        fits = await notifier.request(app.url(f"{path}?n=100"), "IncomingCall", [])
        assert fits.ok and len(fits.body) == 100
        too_big = await notifier.request(app.url(f"{path}?n=110"), "IncomingCall", [])
        assert (too_big.ok, too_big.status, too_big.body, too_big.error) == (
            False,
            200,
            "",
            "reply larger than 100 bytes",
        )
    await notifier.close()


# --- redirects -----------------------------------------------------------------------------------


def redirect(code: int, location: str) -> Handler:
    async def handler(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(status=code, headers={"Location": location})

    return handler


async def test_307_and_308_repeat_the_post(app: App, notifier: Notifier) -> None:
    app.routes["/r307"] = redirect(307, "/r308")
    app.routes["/r308"] = redirect(308, "/final?x=1")
    reply = await notifier.request(app.url("/r307"), "IncomingCall", [("CallId", "c")])
    assert reply.ok
    final = app.at("/final")[0]
    assert (final.method, final.path_qs) == ("POST", "/final?x=1")
    assert final.body == b"NotificationName=IncomingCall&CallId=c"


@pytest.mark.parametrize("code", [301, 302, 303])
async def test_301_302_303_continue_as_get(app: App, notifier: Notifier, code: int) -> None:
    app.routes["/moved"] = redirect(code, "/final")
    reply = await notifier.request(app.url("/moved"), "IncomingCall", [("CallId", "c")])
    assert reply.ok
    final = app.at("/final")[0]
    assert (final.method, final.body) == ("GET", b"")
    assert "Content-Length" not in final.headers or final.headers["Content-Length"] == "0"


@pytest.mark.parametrize(("hops", "ok"), [(5, True), (6, False)])
async def test_at_most_five_redirects(app: App, notifier: Notifier, hops: int, ok: bool) -> None:
    for i in range(hops):
        app.routes[f"/hop{i}"] = redirect(307, f"/hop{i + 1}")
    reply = await notifier.request(app.url("/hop0"), "IncomingCall", [])
    assert reply.ok is ok
    if not ok:
        assert reply.error == "more than 5 redirects"
        assert len(app.seen) == 6
    else:
        assert app.seen[-1].path_qs == "/hop5"


async def test_redirects_can_be_disabled(app: App, make_notifier: Callable[..., Notifier]) -> None:
    app.routes["/moved"] = redirect(302, "/final")
    notifier = make_notifier(NotifySettings(timeout=2.0, max_redirects=0))
    reply = await notifier.request(app.url("/moved"), "IncomingCall", [])
    assert (reply.ok, reply.status, reply.error) == (False, 302, "HTTP 302 Found")
    assert app.at("/final") == []
    await notifier.close()


# --- reports: retries (spec 2.3) -----------------------------------------------------------------


async def test_post_returns_at_once_and_reports_later(app: App, notifier: Notifier) -> None:
    app.routes["/hook"] = blocked(app)
    replies = Replies()
    notifier.post(app.url(), "CallChanged", [("CallId", "c")], key="c", on_reply=replies)
    assert notifier.pending == 1 and replies.got == []
    await until(lambda: len(app.seen) == 1)
    assert replies.got == []
    app.release.set()
    await until(lambda: notifier.pending == 0)
    assert [r.ok for r in replies.got] == [True]


async def test_retried_after_500_then_succeeds(app: App, notifier: Notifier) -> None:
    @app.on("/flaky")
    async def flaky(request: web.Request, seen: Seen) -> web.StreamResponse:
        if len(app.seen) == 1:
            return web.Response(status=500)
        return web.Response(text="<Response/>")

    replies = Replies()
    notifier.post(app.url("/flaky"), "CallChanged", [("CallId", "c")], key="c", on_reply=replies)
    await until(lambda: replies.got != [])
    assert [s.body for s in app.seen] == [b"NotificationName=CallChanged&CallId=c"] * 2
    assert (replies.got[0].ok, replies.got[0].status, replies.got[0].body) == (
        True,
        200,
        "<Response/>",
    )
    assert notifier.pending == 0


async def test_retries_back_off_exponentially(
    app: App, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pypbx.notify")
    app.routes["/down"] = status(503)
    notifier = make_notifier(NotifySettings(timeout=2.0, retries=3, retry_delay=0.05))
    replies = Replies()
    notifier.post(app.url("/down"), "CallChanged", [], on_reply=replies)
    await until(lambda: replies.got != [])
    starts = [s.start for s in app.seen]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
    assert (replies.got[0].status, replies.got[0].error) == (503, "HTTP 503 Service Unavailable")
    assert "(attempt 4/4): HTTP 503 Service Unavailable" in caplog.text
    assert "CallChanged to " + app.url("/down") + " failed after 4 attempt(s)" in caplog.text
    await notifier.close()


async def test_no_retry_after_4xx(app: App, notifier: Notifier) -> None:
    app.routes["/gone"] = status(404)
    replies = Replies()
    notifier.post(app.url("/gone"), "CallChanged", [], on_reply=replies)
    await until(lambda: replies.got != [])
    await asyncio.sleep(0.05)
    assert len(app.seen) == 1
    assert (replies.got[0].ok, replies.got[0].status) == (False, 404)


async def test_no_retry_for_invalid_url(notifier: Notifier) -> None:
    replies = Replies()
    notifier.post("mailto:x@y", "CallChanged", [], on_reply=replies)
    await until(lambda: replies.got != [])
    assert replies.got[0].error == "invalid URL: unsupported URL scheme 'mailto'"


async def test_retried_after_connection_error(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pypbx.notify")
    replies = Replies()
    url = f"http://127.0.0.1:{unused_port()}/x"
    notifier.post(url, "Error", [], on_reply=replies)
    await until(lambda: replies.got != [])
    assert replies.got[0].error is not None
    assert replies.got[0].error.startswith("connection failed: ")
    assert f"Error to {url} (attempt 1/2): connection failed" in caplog.text
    assert f"Error to {url} (attempt 2/2): connection failed" in caplog.text


async def test_retried_after_timeout(app: App, make_notifier: Callable[..., Notifier]) -> None:
    app.routes["/slow"] = blocked(app)
    notifier = make_notifier(NotifySettings(timeout=0.1, retry_delay=0.01))
    replies = Replies()
    notifier.post(app.url("/slow"), "CallChanged", [], on_reply=replies)
    await until(lambda: replies.got != [])
    assert len(app.seen) == 2
    assert replies.got[0].error == "timeout after 0.1 s"
    await notifier.close(0)


async def test_failing_on_reply_is_logged_and_harmless(
    app: App, notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(reply: NotificationReply) -> None:
        raise RuntimeError("boom")

    replies = Replies()
    notifier.post(app.url(), "CallChanged", [("n", "1")], key="k", on_reply=explode)
    notifier.post(app.url(), "CallChanged", [("n", "2")], key="k", on_reply=replies)
    await until(lambda: replies.got != [])
    assert "notification on_reply callback failed" in caplog.text
    assert [s.field["n"] for s in app.seen] == ["1", "2"]


async def test_logging(app: App, notifier: Notifier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pypbx.notify")
    await notifier.request(app.url(), "DtmfEntered", [("DtmfDigits", "4711")])
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1
    assert info[0].name == "pypbx.notify.client"
    message = info[0].getMessage()
    assert message.startswith(f"DtmfEntered to {app.base}/hook (attempt 1/1): 200 in ")
    assert message.endswith(" s")
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "('DtmfDigits', '4711')" in debug
    assert "<Response></Response>" in debug


# --- ordering and bounds (spec 2.3) --------------------------------------------------------------


async def test_per_key_order_under_concurrency(
    app: App, make_notifier: Callable[..., Notifier]
) -> None:
    rng = random.Random(7)

    @app.on("/jitter")
    async def jitter(request: web.Request, seen: Seen) -> web.StreamResponse:
        await asyncio.sleep(rng.uniform(0, 0.015))
        if rng.random() < 0.2 and seen.field["Seq"] != "steer":
            return web.Response(status=500)  # a retried report still keeps its place
        return web.Response(text="")

    notifier = make_notifier(NotifySettings(timeout=2.0, retries=5, retry_delay=0.001))
    keys = ["call-a", "call-b", "call-c"]
    steering: list[asyncio.Task[NotificationReply]] = []
    for seq in range(12):
        for key in keys:
            notifier.post(
                app.url("/jitter"), "CallChanged", [("Key", key), ("Seq", str(seq))], key=key
            )
        if seq == 5:
            for key in keys:
                fields = [("Key", key), ("Seq", "steer")]
                request = notifier.request(app.url("/jitter"), "GoTo", fields, key=key)
                steering.append(asyncio.create_task(request))
            await asyncio.sleep(0)  # the requests take their places in the queues
    replies = await asyncio.gather(*steering)
    assert all(r.ok for r in replies)
    await until(lambda: notifier.pending == 0, timeout=10)

    expected = [str(s) for s in range(6)] + ["steer"] + [str(s) for s in range(6, 12)]
    for key in keys:
        mine = [s for s in app.seen if s.field["Key"] == key]
        delivered: list[str] = []
        for s in mine:  # collapse retries of the same report
            if not delivered or delivered[-1] != s.field["Seq"]:
                delivered.append(s.field["Seq"])
        assert delivered == expected
        for a, b in itertools.pairwise(mine):
            assert a.end <= b.start, "one at a time per key"

    assert len(app.seen) > 3 * 13, "some reports were retried"
    seen_a = [s for s in app.seen if s.field["Key"] == "call-a"]
    seen_b = [s for s in app.seen if s.field["Key"] == "call-b"]
    overlap = any(x.start < y.end and y.start < x.end for x in seen_a for y in seen_b)
    assert overlap, "different keys run concurrently"
    assert notifier.active_keys == 0
    await notifier.close()


async def test_steering_request_waits_for_reports_ahead(app: App, notifier: Notifier) -> None:
    gate = asyncio.Event()

    @app.on("/report")
    async def report(request: web.Request, seen: Seen) -> web.StreamResponse:
        await gate.wait()
        return web.Response(text="")

    notifier.post(app.url("/report"), "CallChanged", [("n", "1")], key="K")
    steer = asyncio.create_task(notifier.request(app.url("/steer"), "GoTo", [], key="K"))
    await until(lambda: len(app.seen) == 1)
    notifier.post(app.url("/report"), "CallChanged", [("n", "2")], key="K")

    other = await notifier.request(app.url("/steer"), "GoTo", [("other", "1")], key="L")
    assert other.ok  # another call is not held up
    await asyncio.sleep(0.05)
    assert not steer.done()

    gate.set()
    assert (await steer).ok
    await until(lambda: notifier.pending == 0)
    order = [(s.path_qs, s.field.get("n", s.field.get("other"))) for s in app.seen]
    assert order == [("/report", "1"), ("/steer", "1"), ("/steer", None), ("/report", "2")]


async def test_a_hung_receiver_does_not_hold_up_another_receiver_of_the_same_call(
    app: App, notifier: Notifier
) -> None:
    """Order is kept per receiver: the routing application must not wait for a hung logger."""
    app.routes["/report"] = blocked(app)
    notifier.post(app.url("/report"), "CallChanged", [("n", "1")], key="K")
    await until(lambda: len(app.seen) == 1)
    other_receiver = app.url("/steer").replace("127.0.0.1", "localhost", 1)
    reply = await asyncio.wait_for(
        notifier.request(other_receiver, "RoutingInterception", [], key="K"), 5
    )
    assert reply.ok
    steer = asyncio.create_task(notifier.request(app.url("/steer"), "GoTo", [], key="K"))
    await asyncio.sleep(0.05)
    assert not steer.done(), "the same receiver still gets the call's notifications in order"
    app.release.set()
    assert (await steer).ok


async def test_cancelled_steering_request_leaves_the_queue(app: App, notifier: Notifier) -> None:
    app.routes["/report"] = blocked(app)
    notifier.post(app.url("/report"), "CallChanged", [("n", "1")], key="K")
    steer = asyncio.create_task(notifier.request(app.url("/steer"), "GoTo", [], key="K"))
    await until(lambda: len(app.seen) == 1)
    notifier.post(app.url("/report"), "CallChanged", [("n", "2")], key="K")
    steer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await steer
    app.release.set()
    await until(lambda: notifier.pending == 0 and notifier.active_keys == 0)
    assert [s.path_qs for s in app.seen] == ["/report", "/report"]


async def test_idle_keys_are_cleaned_up(app: App, notifier: Notifier) -> None:
    for i in range(300):
        notifier.post(app.url(), "CallChanged", [("CallId", f"c{i}")], key=f"c{i}")
        if i % 3 == 0:
            await notifier.request(app.url(), "GoTo", [], key=f"c{i}")
    assert notifier.active_keys > 0
    await until(lambda: notifier.pending == 0 and notifier.active_keys == 0, timeout=10)
    assert len(app.seen) == 400


async def test_queue_bound_drops_the_oldest_report(
    app: App, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    app.routes["/hook"] = blocked(app)
    notifier = make_notifier(NotifySettings(timeout=2.0, max_queue=3))
    replies: dict[int, Replies] = {i: Replies() for i in range(6)}
    notifier.post(app.url(), "CallChanged", [("n", "0")], key="K", on_reply=replies[0])
    await until(lambda: len(app.seen) == 1)  # n=0 is on the wire, no longer waiting
    for i in range(1, 6):
        notifier.post(app.url(), "CallChanged", [("n", str(i))], key="K", on_reply=replies[i])
    assert notifier.pending == 4
    assert caplog.text.count("notification queue full (3): dropped CallChanged to ") == 2
    await asyncio.sleep(0)
    for i in (1, 2):
        assert replies[i].got == [
            NotificationReply(False, None, "", "dropped: report queue full", 0.0)
        ]
    app.release.set()
    await until(lambda: notifier.pending == 0)
    assert [s.field["n"] for s in app.seen] == ["0", "3", "4", "5"]
    assert all(replies[i].got[0].ok for i in (0, 3, 4, 5))
    await notifier.close()


async def test_in_flight_is_bounded(app: App, make_notifier: Callable[..., Notifier]) -> None:
    app.routes["/hook"] = blocked(app)
    notifier = make_notifier(NotifySettings(timeout=2.0, max_in_flight=2))
    for i in range(5):
        notifier.post(app.url(), "CallChanged", [], key=f"k{i}")
    await until(lambda: len(app.seen) == 2)
    await asyncio.sleep(0.05)
    assert len(app.seen) == 2
    app.release.set()
    await until(lambda: notifier.pending == 0)
    assert len(app.seen) == 5
    await notifier.close()


# --- close ---------------------------------------------------------------------------------------


async def test_close_drains_queued_reports(
    app: App, make_notifier: Callable[..., Notifier]
) -> None:
    @app.on("/slowish")
    async def slowish(request: web.Request, seen: Seen) -> web.StreamResponse:
        await asyncio.sleep(0.02)
        return web.Response(text="")

    notifier = make_notifier()
    replies = Replies()
    for i in range(5):
        notifier.post(
            app.url("/slowish"), "CallChanged", [("n", str(i))], key="K", on_reply=replies
        )
    notifier.post(app.url("/slowish"), "CallChanged", [("n", "x")], on_reply=replies)
    await notifier.close(timeout=5)
    assert notifier.pending == 0 and notifier.active_keys == 0
    assert [s.field["n"] for s in app.seen if s.field["n"] != "x"] == ["0", "1", "2", "3", "4"]
    assert len(replies.got) == 6 and all(r.ok for r in replies.got)

    late = Replies()
    notifier.post(app.url(), "CallChanged", [], key="K", on_reply=late)
    assert late.got == []  # never from inside post()
    await asyncio.sleep(0)
    assert late.got == [NotificationReply(False, None, "", "notifier closed", 0.0)]
    for key in ("K", None):
        reply = await notifier.request(app.url(), "IncomingCall", [], key=key)
        assert (reply.ok, reply.error) == (False, "notifier closed")
    assert len(app.seen) == 6


async def test_close_cancels_what_does_not_finish_in_time(
    app: App, make_notifier: Callable[..., Notifier]
) -> None:
    app.routes["/hook"] = blocked(app)
    notifier = make_notifier()
    replies = Replies()
    for i in range(3):
        notifier.post(app.url(), "CallChanged", [("n", str(i))], key="K", on_reply=replies)
    waiting = asyncio.create_task(notifier.request(app.url(), "GoTo", [], key="K"))
    await until(lambda: len(app.seen) == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await notifier.close(timeout=0.1)
    assert loop.time() - started < 1.0
    cancelled = NotificationReply(
        False, None, "", "cancelled: notifier closed before delivery", 0.0
    )
    assert replies.got == [cancelled] * 3
    assert (await waiting).error == "notifier closed"
    assert notifier.pending == 0 and notifier.active_keys == 0


async def test_close_without_use_and_twice(make_notifier: Callable[..., Notifier]) -> None:
    notifier = make_notifier()
    await notifier.close()
    await notifier.close()


async def test_steering_request_is_never_retried(app: App, notifier: Notifier) -> None:
    app.routes["/down"] = status(500)
    reply = await notifier.request(app.url("/down"), "IncomingCall", [], key="K")
    assert (reply.ok, reply.status, reply.error) == (False, 500, "HTTP 500 Internal Server Error")
    await asyncio.sleep(0.05)
    assert len(app.seen) == 1


async def test_post_snapshots_its_fields(app: App, notifier: Notifier) -> None:
    fields = {"CallState": "Ringing"}
    notifier.post(app.url(), "CallChanged", fields, key="K")
    fields["CallState"] = "InCall"
    await until(lambda: notifier.pending == 0)
    assert app.seen[0].field["CallState"] == "Ringing"
