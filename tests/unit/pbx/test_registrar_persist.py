"""Registrar: REGISTERs answered from memory, bindings and runtime info written behind, and
what the 200 says (every live binding with what is left of it, and a Date).

A real SQLite store; scripted stand-ins for the SIP stack and digest authentication.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pypbx.pbx.auth import AuthResult
from pypbx.pbx.registrar import MAX_BINDINGS_PER_EXTENSION, Registrar
from pypbx.sip.message import Request, Response
from pypbx.sip.parser import parse_message
from pypbx.sip.transaction import RequestReceived
from pypbx.store import ExtensionRecord, Store

PHONE = ("192.0.2.20", 5062)
_DATE_RE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


class FakeStack:
    def __init__(self) -> None:
        self.sent: list[Response] = []

    def send_response(self, response: Response) -> None:
        self.sent.append(response)


class FakeAuth:
    """Accepts everyone as the extension it is given."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls = 0

    async def authenticate(self, request: Request, *, proxy: bool) -> AuthResult:
        self.calls += 1
        return AuthResult(await self.store.get_extension("1000"), None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}")
    await opened.add_extension(ExtensionRecord("1000", "SIP", username="1000", password="pw"))
    try:
        yield opened
    finally:
        await opened.close()


def make_registrar(store: Store) -> tuple[Registrar, FakeStack]:
    stack = FakeStack()
    registrar = Registrar(stack, store, FakeAuth(store))  # type: ignore[arg-type]
    return registrar, stack


def register(
    cseq: int, contacts: list[str], *, expires: int | None = 600, call_id: str = "reg-1"
) -> RequestReceived:
    """`contacts` are URIs, or whole Contact values when they start with < (or are *)."""
    lines = [
        "REGISTER sip:pbx.example SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK-{cseq}",
        "From: <sip:1000@pbx.example>;tag=a1",
        "To: <sip:1000@pbx.example>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *([f"Expires: {expires}"] if expires is not None else []),
        "User-Agent: TestPhone/1",
        *(f"Contact: {c}" if c[0] in "*<" else f"Contact: <{c}>" for c in contacts),
        "Content-Length: 0",
    ]
    request = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(request, Request)
    return RequestReceived(request, PHONE, "udp", None)


async def test_register_is_answered_before_anything_is_written(store: Store) -> None:
    registrar, stack = make_registrar(store)
    await registrar.handle(register(1, ["sip:1000@192.0.2.20:5062"]))
    assert stack.sent[0].status == 200
    assert store.registrations.pending == 2  # the binding and where the phone is
    assert await store.list_bindings() == []
    # runtime info is visible at once all the same
    ext = await store.get_extension("1000")
    assert ext is not None and ext.last_ip == "192.0.2.20:5062 (Udp)"
    assert ext.user_agent == "TestPhone/1"
    await store.registrations.flush()
    (saved,) = await store.list_bindings()
    assert saved.contact == "sip:1000@192.0.2.20:5062" and saved.source == "192.0.2.20:5062"


async def test_refresh_from_the_same_place_writes_only_the_binding(store: Store) -> None:
    registrar, _ = make_registrar(store)
    await registrar.handle(register(1, ["sip:1000@192.0.2.20:5062"]))
    await store.registrations.flush()
    generation = store.extensions_generation
    await registrar.handle(register(2, ["sip:1000@192.0.2.20:5062"]))
    assert store.registrations.pending == 1  # runtime info unchanged: not queued
    assert store.extensions_generation == generation
    await store.registrations.flush()
    (saved,) = await store.list_bindings()
    assert saved.cseq == 2


async def test_a_restart_after_a_clean_close_keeps_the_bindings(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}"
    store = await Store.open(url)
    await store.add_extension(ExtensionRecord("1000", "SIP", username="1000"))
    registrar, _ = make_registrar(store)
    await registrar.handle(register(1, ["sip:1000@192.0.2.20:5062"]))
    await store.close()  # what SIGTERM ends with
    store = await Store.open(url)
    try:
        again, _ = make_registrar(store)
        await again.load()
        assert [b.contact for b in again.bindings("1000")] == ["sip:1000@192.0.2.20:5062"]
        ext = await store.get_extension("1000")
        assert ext is not None and ext.last_ip == "192.0.2.20:5062 (Udp)"
    finally:
        await store.close()


async def test_unregister_and_wildcard_delete_what_was_written(store: Store) -> None:
    registrar, stack = make_registrar(store)
    await registrar.handle(register(1, ["sip:a@192.0.2.20", "sip:b@192.0.2.20"]))
    await store.registrations.flush()
    await registrar.handle(register(2, ["sip:a@192.0.2.20"], expires=0))
    await store.registrations.flush()
    assert [b.contact for b in await store.list_bindings()] == ["sip:b@192.0.2.20"]
    await registrar.handle(register(3, ["*"], expires=0))
    assert [r.status for r in stack.sent] == [200, 200, 200]
    await store.registrations.flush()
    assert await store.list_bindings() == []


async def test_bindings_over_the_limit_are_deleted_from_the_store_too(store: Store) -> None:
    registrar, _ = make_registrar(store)
    contacts = [f"sip:{n}@192.0.2.20" for n in range(MAX_BINDINGS_PER_EXTENSION + 1)]
    for cseq, contact in enumerate(contacts, 1):
        await registrar.handle(register(cseq, [contact], expires=600 + cseq))
    await store.registrations.flush()
    stored = {b.contact for b in await store.list_bindings()}
    assert stored == {b.contact for b in registrar.bindings("1000")}
    assert len(stored) == MAX_BINDINGS_PER_EXTENSION and contacts[0] not in stored


async def test_drop_forgets_queued_and_stored_bindings(store: Store) -> None:
    registrar, _ = make_registrar(store)
    await registrar.handle(register(1, ["sip:a@192.0.2.20"]))
    await store.registrations.flush()
    await registrar.handle(register(2, ["sip:b@192.0.2.20"]))  # still queued
    await registrar.drop("1000")
    await store.registrations.flush()
    assert await store.list_bindings() == []
    assert not registrar.is_registered("1000")


async def test_the_200_reports_the_interval_granted(store: Store) -> None:
    registrar, stack = make_registrar(store)
    await registrar.handle(
        register(1, ["<sip:a@192.0.2.20:5062>", "<sip:b@192.0.2.20:5062>;expires=120"])
    )
    (ok,) = stack.sent
    assert ok.status == 200
    assert ok.headers.get_all("Contact") == [
        "<sip:b@192.0.2.20:5062>;expires=120",  # soonest to expire first
        "<sip:a@192.0.2.20:5062>;expires=600",
    ]
    assert _DATE_RE.fullmatch(ok.headers.get("Date") or "")


async def test_a_query_lists_what_is_left(store: Store) -> None:
    registrar, stack = make_registrar(store)
    await registrar.handle(register(1, ["sip:a@192.0.2.20:5062"]))
    await registrar.handle(register(2, [], expires=None))
    query = stack.sent[1]
    assert query.status == 200
    [contact] = query.headers.get_all("Contact")
    remaining = int(contact.rpartition("=")[2])
    assert contact.startswith("<sip:a@192.0.2.20:5062>;expires=") and 598 <= remaining <= 600


async def test_wildcard_needs_expires_zero(store: Store) -> None:
    registrar, stack = make_registrar(store)
    await registrar.handle(register(1, ["sip:a@192.0.2.20:5062"]))
    await registrar.handle(register(2, ["*"], expires=600))
    assert (stack.sent[1].status, stack.sent[1].reason) == (
        400,
        "Wildcard Contact requires Expires: 0",
    )
    await registrar.handle(register(3, ["*"], expires=0))
    assert stack.sent[2].status == 200 and stack.sent[2].headers.get_all("Contact") == []
    assert registrar.bindings("1000") == []


async def test_out_of_order_register_is_refused(store: Store) -> None:
    registrar, stack = make_registrar(store)
    await registrar.handle(register(5, ["sip:a@192.0.2.20:5062"]))
    await registrar.handle(register(4, ["sip:a@192.0.2.20:5062"]))
    assert (stack.sent[1].status, stack.sent[1].reason) == (500, "Out of order REGISTER")


def test_date_is_formatted_once_a_second(store: Store) -> None:
    registrar, _ = make_registrar(store)
    moment = datetime(2026, 11, 27, 23, 59, 59, 100, tzinfo=UTC)
    first = registrar._http_date(moment)
    assert first == "Fri, 27 Nov 2026 23:59:59 GMT"
    assert registrar._http_date(moment + timedelta(microseconds=999_000)) is first
    assert registrar._http_date(moment + timedelta(seconds=1)) == "Sat, 28 Nov 2026 00:00:00 GMT"


async def test_a_refresh_with_the_same_contact_text_reuses_its_parse(store: Store) -> None:
    registrar, stack = make_registrar(store)
    value = "<sip:1000@192.0.2.20:5062;transport=UDP>;expires=120"
    await registrar.handle(register(1, [value]))
    cached = registrar._contacts[value]
    assert cached[1] == "sip:1000@192.0.2.20:5062;transport=UDP"
    await registrar.handle(register(2, [value]))
    assert registrar._contacts[value] is cached
    assert [r.status for r in stack.sent] == [200, 200]
    (binding,) = registrar.bindings("1000")
    assert binding.contact == cached[1] and binding.cseq == 2
    assert stack.sent[1].headers.get("Contact", "").endswith(";expires=120")


async def test_a_bad_contact_is_refused_every_time_and_never_remembered(store: Store) -> None:
    registrar, stack = make_registrar(store)
    for cseq in (1, 2):
        await registrar.handle(register(cseq, ["<sip:1000@[::1>"]))
    assert [(r.status, r.reason) for r in stack.sent] == [(400, "Bad Contact: Bad address")] * 2
    assert registrar._contacts == {}


async def test_the_contact_memory_is_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pypbx.pbx.registrar.CONTACT_CACHE_SIZE", 2)
    registrar, stack = make_registrar(store)
    for cseq in range(1, 6):
        await registrar.handle(register(cseq, [f"sip:1000@192.0.2.{cseq}:5062"]))
    assert len(registrar._contacts) <= 2
    assert all(r.status == 200 for r in stack.sent)
