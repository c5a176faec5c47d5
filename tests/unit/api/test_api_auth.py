"""Authentication (spec 4.2 step 3, 5.3-5.5): 304/305/306, sources of credentials, caching."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from api_support import ClientFactory, FakeStore, code_message, envelope

import pypbx.api.auth as auth_module
from pypbx.api.auth import Authenticator, Credentials
from pypbx.api.settings import ApiSettings
from pypbx.api.status import ApiError, Status
from pypbx.store.records import ExtensionRecord, OfficeUserRecord

EMPTY_CALLS = envelope(200, "Command successfully executed", "  <ActiveCalls />")
AUTH = ApiSettings()


@pytest.fixture
def users(store: FakeStore, password_hashes: dict[str, str]) -> FakeStore:
    store.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"])
    store.users["admin"] = OfficeUserRecord("admin", password_hashes["abc123"], is_admin=True)
    store.users["user1000"] = OfficeUserRecord(
        "user1000", password_hashes["mypassword12"], may_use_api=False
    )
    return store


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_auth_is_on_by_default() -> None:
    assert ApiSettings().auth_required is True


async def test_o10_example_with_query_credentials(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    resp = await client.get("/api?command=ListActiveCalls&Username=HTTP_User_1&Password=qwe123")
    assert await resp.text() == EMPTY_CALLS


@pytest.mark.parametrize(
    "query",
    [
        "command=ListActiveCalls",
        "command=ListActiveCalls&Username=HTTP_User_1",
        "command=ListActiveCalls&Password=qwe123",
        "command=ListActiveCalls&Username=HTTP_User_1&Password=",
        "command=ListActiveCalls&Username=+&Password=qwe123",
    ],
)
async def test_missing_credentials_304(
    make_client: ClientFactory, users: FakeStore, query: str
) -> None:
    client = await make_client(AUTH)
    resp = await client.get(f"/?{query}")
    assert await resp.text() == envelope(304, "Authentication required")


@pytest.mark.parametrize(
    "query",
    [
        "Username=HTTP_User_1&Password=wrong",
        "Username=nobody&Password=qwe123",
        "Username=http_user_1&Password=qwe123",  # user names are exact
        "Username=HTTP_User_1&Password=QWE123",
    ],
)
async def test_bad_credentials_305(
    make_client: ClientFactory, users: FakeStore, query: str
) -> None:
    client = await make_client(AUTH)
    resp = await client.get(f"/?command=ListActiveCalls&{query}")
    assert await resp.text() == envelope(305, "Authentication failed, bad username or password")


async def test_user_without_api_right_306(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(AUTH)
    resp = await client.get("/?command=ListActiveCalls&Username=user1000&Password=mypassword12")
    assert await resp.text() == envelope(306, "User is not allowed to use API in ACL")
    # ... but a wrong password is still 305: the right is only revealed to the real user.
    resp = await client.get("/?command=ListActiveCalls&Username=user1000&Password=x")
    assert code_message(await resp.text())[0] == 305


async def test_lowercase_names_and_post_body(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(AUTH)
    resp = await client.get("/?command=ListActiveCalls&username=HTTP_User_1&PASSWORD=qwe123")
    assert await resp.text() == EMPTY_CALLS
    resp = await client.post(
        "/api", data={"command": "ListActiveCalls", "Username": "HTTP_User_1", "Password": "qwe123"}
    )
    assert await resp.text() == EMPTY_CALLS
    resp = await client.post(
        "/?Username=HTTP_User_1&Password=wrong",
        data={"command": "ListActiveCalls", "Password": "qwe123"},
    )
    assert await resp.text() == EMPTY_CALLS  # body wins


async def test_http_basic(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(AUTH)
    resp = await client.get("/?command=ListActiveCalls", headers=basic("HTTP_User_1", "qwe123"))
    assert await resp.text() == EMPTY_CALLS
    resp = await client.get("/?command=ListActiveCalls", headers=basic("HTTP_User_1", "nope"))
    assert code_message(await resp.text())[0] == 305
    resp = await client.get("/?command=ListActiveCalls", headers={"Authorization": "Basic !!!"})
    assert code_message(await resp.text())[0] == 304
    resp = await client.get("/?command=ListActiveCalls", headers={"Authorization": "Bearer x"})
    assert code_message(await resp.text())[0] == 304


async def test_query_credentials_take_precedence_over_basic(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    resp = await client.get(
        "/?command=ListActiveCalls&Username=HTTP_User_1&Password=wrong",
        headers=basic("HTTP_User_1", "qwe123"),
    )
    assert code_message(await resp.text())[0] == 305


async def test_auth_off_ignores_credentials(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(ApiSettings(auth_required=False))
    resp = await client.get("/?command=ListActiveCalls&Username=nobody&Password=x")
    assert await resp.text() == EMPTY_CALLS
    assert users.get_user_calls == 0


async def test_auth_precedes_command_checks(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(AUTH)
    for query in ("", "command=Foo", "command=Hangup", "command=Hold"):
        resp = await client.get(f"/?{query}")
        assert code_message(await resp.text())[0] == 304, query
    resp = await client.get("/?Username=HTTP_User_1&Password=qwe123")
    assert code_message(await resp.text())[0] == 302


async def test_get_config_requires_admin_when_auth_is_on(
    make_client: ClientFactory, users: FakeStore
) -> None:
    users.extensions["1000"] = ExtensionRecord("1000", "SIP", password="1000")
    client = await make_client(AUTH)
    resp = await client.get(
        "/?command=GetConfig&ExtensionId=1000&Username=HTTP_User_1&Password=qwe123"
    )
    assert await resp.text() == envelope(306, "User is not allowed to use API in ACL")
    # 306 comes before parameter checks: a non-admin learns nothing about ids.
    resp = await client.get("/?command=GetConfig&Username=HTTP_User_1&Password=qwe123")
    assert code_message(await resp.text())[0] == 306
    resp = await client.get("/?command=GetConfig&ExtensionId=1000&Username=admin&Password=abc123")
    assert code_message(await resp.text())[0] == 200
    open_client = await make_client(ApiSettings(auth_required=False))
    resp = await open_client.get("/?command=GetConfig&ExtensionId=1000")
    assert code_message(await resp.text())[0] == 200


async def test_other_config_commands_do_not_need_admin(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    resp = await client.get("/?command=ListExtensions&Username=HTTP_User_1&Password=qwe123")
    assert code_message(await resp.text())[0] == 200


class CountingVerify:
    def __init__(self) -> None:
        self.calls = 0
        self.real = auth_module.verify_password

    def __call__(self, password: str, stored: str) -> bool:
        self.calls += 1
        return self.real(password, stored)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingVerify:
    counter = CountingVerify()
    monkeypatch.setattr(auth_module, "verify_password", counter)
    return counter


async def test_successful_verification_is_cached(
    make_client: ClientFactory, users: FakeStore, counting: CountingVerify
) -> None:
    client = await make_client(AUTH)
    url = "/?command=ListActiveCalls&Username=HTTP_User_1&Password=qwe123"
    for _ in range(3):
        assert await (await client.get(url)).text() == EMPTY_CALLS
    assert counting.calls == 1
    # Failures are never cached: each wrong attempt pays the full hash.
    bad = "/?command=ListActiveCalls&Username=HTTP_User_1&Password=wrong"
    for _ in range(2):
        assert code_message(await (await client.get(bad)).text())[0] == 305
    assert counting.calls == 3


async def test_cache_follows_password_and_right_changes(
    make_client: ClientFactory,
    users: FakeStore,
    counting: CountingVerify,
    password_hashes: dict[str, str],
) -> None:
    client = await make_client(AUTH)
    old = "/?command=ListActiveCalls&Username=HTTP_User_1&Password=qwe123"
    new = "/?command=ListActiveCalls&Username=HTTP_User_1&Password=abc123"
    assert code_message(await (await client.get(old)).text())[0] == 200
    users.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["abc123"])
    assert code_message(await (await client.get(old)).text())[0] == 305
    assert code_message(await (await client.get(new)).text())[0] == 200
    users.users["HTTP_User_1"] = OfficeUserRecord(
        "HTTP_User_1", password_hashes["abc123"], may_use_api=False
    )
    assert code_message(await (await client.get(new)).text())[0] == 306
    users.users.pop("HTTP_User_1")
    assert code_message(await (await client.get(new)).text())[0] == 305


async def test_unknown_user_still_costs_a_verification(
    users: FakeStore, counting: CountingVerify
) -> None:
    authenticator = Authenticator(users)
    with pytest.raises(ApiError) as info:
        await authenticator.authenticate(Credentials("nobody", "x"))
    assert info.value.status is Status.AUTHENTICATION_FAILED
    assert counting.calls == 1


async def test_cache_is_bounded_and_keyed_by_hmac(
    users: FakeStore, password_hashes: dict[str, str]
) -> None:
    for name in ("a", "b", "c"):
        users.users[name] = OfficeUserRecord(name, password_hashes["qwe123"])
    authenticator = Authenticator(users, cache_size=2)
    for name in ("a", "b", "c"):
        await authenticator.authenticate(Credentials(name, "qwe123"))
    cache: Any = authenticator._verified
    assert len(cache) == 2
    assert all(isinstance(key, bytes) and len(key) == 32 for key in cache)
    assert all(b"qwe123" not in key for key in cache)
    authenticator.clear_cache()
    assert len(cache) == 0


async def test_no_credentials_is_304() -> None:
    with pytest.raises(ApiError) as info:
        await Authenticator(FakeStore()).authenticate(None)
    assert info.value.status is Status.AUTHENTICATION_REQUIRED


def test_credentials_repr_hides_password() -> None:
    assert "qwe123" not in repr(Credentials("HTTP_User_1", "qwe123"))
