"""What the registrar's 200 says: every live binding with what is left of it, and a Date.

A real SQLite store; scripted stand-ins for the SIP stack and digest authentication.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pypbx.pbx.auth import AuthResult
from pypbx.pbx.registrar import Registrar
from pypbx.sip.message import Request, Response
from pypbx.sip.parser import parse_message
from pypbx.sip.transaction import RequestReceived
from pypbx.store import ExtensionRecord, Store

PHONE = ("192.0.2.21", 5070)
_DATE_RE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


class FakeStack:
    def __init__(self) -> None:
        self.sent: list[Response] = []

    def send_response(self, response: Response) -> None:
        self.sent.append(response)


class FakeAuth:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate(self, request: Request, *, proxy: bool) -> AuthResult:
        return AuthResult(await self.store.get_extension("2000"), None)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Registrar, FakeStack]]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}")
    await store.add_extension(ExtensionRecord("2000", "SIP", username="2000", password="pw"))
    stack = FakeStack()
    try:
        yield Registrar(stack, store, FakeAuth(store)), stack  # type: ignore[arg-type]
    finally:
        await store.close()


def register(cseq: int, contacts: list[str], expires: int | None = 600) -> RequestReceived:
    lines = [
        "REGISTER sip:pbx.example SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.21:5070;branch=z9hG4bK-r{cseq}",
        "From: <sip:2000@pbx.example>;tag=b1",
        "To: <sip:2000@pbx.example>",
        "Call-ID: reg-2",
        f"CSeq: {cseq} REGISTER",
        *([f"Expires: {expires}"] if expires is not None else []),
        *(f"Contact: {c}" for c in contacts),
        "Content-Length: 0",
    ]
    request = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(request, Request)
    return RequestReceived(request, PHONE, "udp", None)


async def test_the_200_reports_the_interval_granted(setup: tuple[Registrar, FakeStack]) -> None:
    registrar, stack = setup
    await registrar.handle(
        register(1, ["<sip:a@192.0.2.21:5070>", "<sip:b@192.0.2.21:5070>;expires=120"])
    )
    (ok,) = stack.sent
    assert ok.status == 200
    assert ok.headers.get_all("Contact") == [
        "<sip:b@192.0.2.21:5070>;expires=120",  # soonest to expire first
        "<sip:a@192.0.2.21:5070>;expires=600",
    ]
    assert _DATE_RE.fullmatch(ok.headers.get("Date") or "")


async def test_a_query_lists_what_is_left(setup: tuple[Registrar, FakeStack]) -> None:
    registrar, stack = setup
    await registrar.handle(register(1, ["<sip:a@192.0.2.21:5070>"]))
    await registrar.handle(register(2, [], expires=None))
    query = stack.sent[1]
    assert query.status == 200
    [contact] = query.headers.get_all("Contact")
    remaining = int(contact.rpartition("=")[2])
    assert contact.startswith("<sip:a@192.0.2.21:5070>;expires=") and 598 <= remaining <= 600


async def test_wildcard_needs_expires_zero(setup: tuple[Registrar, FakeStack]) -> None:
    registrar, stack = setup
    await registrar.handle(register(1, ["<sip:a@192.0.2.21:5070>"]))
    await registrar.handle(register(2, ["*"], expires=600))
    assert (stack.sent[1].status, stack.sent[1].reason) == (
        400,
        "Wildcard Contact requires Expires: 0",
    )
    await registrar.handle(register(3, ["*"], expires=0))
    assert stack.sent[2].status == 200 and stack.sent[2].headers.get_all("Contact") == []
    assert registrar.bindings("2000") == []


async def test_out_of_order_register_is_refused(setup: tuple[Registrar, FakeStack]) -> None:
    registrar, stack = setup
    await registrar.handle(register(5, ["<sip:a@192.0.2.21:5070>"]))
    await registrar.handle(register(4, ["<sip:a@192.0.2.21:5070>"]))
    assert (stack.sent[1].status, stack.sent[1].reason) == (500, "Out of order REGISTER")


def test_date_is_formatted_once_a_second(setup: tuple[Registrar, FakeStack]) -> None:
    registrar, _ = setup
    moment = datetime(2026, 11, 27, 23, 59, 59, 100, tzinfo=UTC)
    first = registrar._http_date(moment)
    assert first == "Fri, 27 Nov 2026 23:59:59 GMT"
    assert registrar._http_date(moment + timedelta(microseconds=999_000)) is first
    assert registrar._http_date(moment + timedelta(seconds=1)) == "Sat, 28 Nov 2026 00:00:00 GMT"
