"""Passwords never reach any log (spec 5.5), whatever runner serves the app."""

from __future__ import annotations

import base64
import logging

import pytest
from aiohttp.web_log import AccessLogger
from api_support import ClientFactory, FakeStore, raw_request

from pypbx.api.access_log import redact_target
from pypbx.api.settings import ApiSettings
from pypbx.store.records import OfficeUserRecord

SECRET = "TopSecret42"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/?command=X&Password=abc", "/?command=X&Password=***"),
        ("/api?Username=u&password=abc&x=1", "/api?Username=u&password=***&x=1"),
        ("/?PASSWORD=abc&Password=def", "/?PASSWORD=***&Password=***"),
        ("/?Pass%77ord=abc", "/?Pass%77ord=***"),
        ("/?%20Password=abc", "/?%20Password=***"),
        ("/?+Password+=abc", "/?+Password+=***"),
        ("/?Password=a/b?c%zz&x=1", "/?Password=***&x=1"),
        ("/command=X&Password=abc?y=1", "/command=X&Password=***?y=1"),
        ("/Password=abc", "/Password=***"),
        ("/?Passwords=abc&Password", "/?Passwords=abc&Password"),
        ("/?x=%zz&Password=%FF", "/?x=%zz&Password=***"),
        ("/api", "/api"),
    ],
)
def test_redact_target(target: str, expected: str) -> None:
    assert redact_target(target) == expected


@pytest.fixture
def user(store: FakeStore, password_hashes: dict[str, str]) -> FakeStore:
    store.users["admin"] = OfficeUserRecord("admin", password_hashes["abc123"], is_admin=True)
    return store


@pytest.mark.parametrize("runner_logger", [None, AccessLogger])
async def test_no_password_in_any_log(
    make_client: ClientFactory,
    user: FakeStore,
    caplog: pytest.LogCaptureFixture,
    runner_logger: type[AccessLogger] | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    kwargs = {} if runner_logger is None else {"access_log_class": runner_logger}
    client = await make_client(ApiSettings(), **kwargs)
    await client.get(f"/?command=ListActiveCalls&Username=admin&Password={SECRET}")
    await client.get("/?command=ListActiveCalls&Username=admin&Password=abc123")
    await client.get(f"/api/?command=Foo&Username=nobody&password={SECRET}")
    await client.post("/", data={"command": "ListActiveCalls", "Password": SECRET})
    token = base64.b64encode(f"admin:{SECRET}".encode()).decode()
    await client.get("/?command=ListActiveCalls", headers={"Authorization": f"Basic {token}"})
    await raw_request(client, f"/command=ListActiveCalls&Password={SECRET}&x=%zz")
    await raw_request(client, f"/nowhere?Password={SECRET}")
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 7
    assert "Password=***" in access[0].getMessage()
    assert '"GET /?command=ListActiveCalls&Username=admin&Password=*** HTTP/1.1" 200' in (
        access[0].getMessage()
    )
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert "abc123" not in record.getMessage()
    assert SECRET not in caplog.text
