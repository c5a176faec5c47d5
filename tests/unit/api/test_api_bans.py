"""Failed-login bans of the HTTP API: after N bad logins an address gets 305 for every
login, the right password included, looking exactly like a wrong password; loopback is
exempt by default; missing credentials still get the documented 304."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from api_support import ClientFactory, FakeStore, envelope

import pypbx.api.auth as auth_module
from pypbx.api.auth import Authenticator, Credentials
from pypbx.api.server import API_SERVICE
from pypbx.api.settings import ApiSettings
from pypbx.api.status import ApiError, Status
from pypbx.pbx.abuse import FailureBans
from pypbx.store.records import OfficeUserRecord

AUTH = ApiSettings()
GOOD = "command=ListActiveCalls&Username=HTTP_User_1&Password=qwe123"
WRONG = "command=ListActiveCalls&Username=HTTP_User_1&Password=guess"
EMPTY_CALLS = envelope(200, "Command successfully executed", "  <ActiveCalls />")
REFUSED = envelope(305, "Authentication failed, bad username or password")
REQUIRED = envelope(304, "Authentication required")
ATTACKER = "203.0.113.50"


@pytest.fixture
def users(store: FakeStore, password_hashes: dict[str, str]) -> FakeStore:
    store.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"])
    store.users["nobody_api"] = OfficeUserRecord(
        "nobody_api", password_hashes["abc123"], may_use_api=False
    )
    return store


def bannable(client: TestClient[Any, Any], **kwargs: Any) -> FailureBans:
    """Give the client's app a ban list that does not exempt loopback (the test client's
    address) and return it."""
    kwargs.setdefault("max_failures", 3)
    bans = FailureBans(ignore=(), **kwargs)
    client.server.app[API_SERVICE].authenticator.bans = bans
    return bans


async def get(client: TestClient[Any, Any], query: str, **kwargs: Any) -> str:
    resp = await client.get(f"/?{query}", **kwargs)
    assert resp.status == 200
    return await resp.text()


async def test_the_right_password_is_refused_like_a_wrong_one_once_banned(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    bannable(client)
    assert await get(client, GOOD) == EMPTY_CALLS
    for _ in range(3):
        assert await get(client, WRONG) == REFUSED
    assert await get(client, GOOD) == REFUSED  # byte for byte the wrong-password answer
    auth = {"Authorization": "Basic SFRUUF9Vc2VyXzE6cXdlMTIz"}  # HTTP_User_1:qwe123
    assert await get(client, "command=ListActiveCalls", headers=auth) == REFUSED


async def test_the_ban_ends(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(AUTH)
    bannable(client, ban_seconds=0.5)
    for _ in range(3):
        await get(client, WRONG)
    assert await get(client, GOOD) == REFUSED
    await asyncio.sleep(0.6)
    assert await get(client, GOOD) == EMPTY_CALLS


async def test_unknown_users_count_and_successes_do_not_clear_the_count(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    bannable(client)
    await get(client, "command=ListActiveCalls&Username=admin&Password=admin")
    assert await get(client, GOOD) == EMPTY_CALLS  # a known account does not launder guesses
    await get(client, "command=ListActiveCalls&Username=root&Password=root")
    assert await get(client, GOOD) == EMPTY_CALLS
    await get(client, WRONG)
    assert await get(client, GOOD) == REFUSED


async def test_missing_credentials_get_304_banned_or_not(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    bans = bannable(client)
    assert await get(client, "command=ListActiveCalls") == REQUIRED
    assert not bans.banned("127.0.0.1", time.monotonic())  # asking without is no failure
    for _ in range(3):
        await get(client, WRONG)
    assert await get(client, "command=ListActiveCalls") == REQUIRED


async def test_a_user_without_api_rights_is_no_failed_login(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(AUTH)
    bannable(client)
    for _ in range(5):
        text = await get(client, "command=ListActiveCalls&Username=nobody_api&Password=abc123")
        assert text == envelope(306, "User is not allowed to use API in ACL")
    assert await get(client, GOOD) == EMPTY_CALLS


async def test_loopback_is_exempt_by_default(make_client: ClientFactory, users: FakeStore) -> None:
    client = await make_client(AUTH)
    for _ in range(15):
        assert await get(client, WRONG) == REFUSED
    assert await get(client, GOOD) == EMPTY_CALLS


async def test_without_authentication_there_is_nothing_to_ban(
    make_client: ClientFactory, users: FakeStore
) -> None:
    client = await make_client(ApiSettings(auth_required=False))
    bannable(client, max_failures=1)
    for _ in range(3):
        assert await get(client, WRONG) == EMPTY_CALLS


async def test_recordings_are_refused_while_banned(
    make_client: ClientFactory, users: FakeStore, tmp_path: Path
) -> None:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    client = await make_client(ApiSettings(recordings_dir=tmp_path))
    bannable(client)
    good = "/recordings/a.wav?Username=HTTP_User_1&Password=qwe123"
    assert (await client.get(good)).status == 200
    for _ in range(3):
        resp = await client.get("/recordings/a.wav?Username=HTTP_User_1&Password=guess")
        assert resp.status == 401
    assert (await client.get(good)).status == 401


# ---- the Authenticator itself --------------------------------------------------------------


async def test_a_banned_login_costs_no_hashing_but_takes_as_long(
    users: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    authenticator = Authenticator(users)
    authenticator.bans = FailureBans(max_failures=1, ignore=())
    wrong = Credentials("HTTP_User_1", "guess")
    with pytest.raises(ApiError) as failed:
        await authenticator.authenticate(wrong, ATTACKER)
    assert failed.value.status == Status.AUTHENTICATION_FAILED
    verifications: list[str] = []
    real_verify = auth_module.verify_password

    def counting(password: str, password_hash: str) -> bool:
        verifications.append(password)
        return real_verify(password, password_hash)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    expected = authenticator._verify_seconds
    start = time.monotonic()
    with pytest.raises(ApiError) as banned:
        await authenticator.authenticate(Credentials("HTTP_User_1", "qwe123"), ATTACKER)
    assert banned.value.status == Status.AUTHENTICATION_FAILED
    assert banned.value.message == failed.value.message
    assert time.monotonic() - start >= expected * 0.9
    assert verifications == []
    user = await authenticator.authenticate(Credentials("HTTP_User_1", "qwe123"), "192.0.2.1")
    assert user.username == "HTTP_User_1"  # other addresses are not affected
    assert await authenticator.authenticate(Credentials("HTTP_User_1", "qwe123"))  # no address


async def test_without_an_address_nothing_is_counted(users: FakeStore) -> None:
    authenticator = Authenticator(users)
    authenticator.bans = FailureBans(max_failures=1, ignore=())
    for _ in range(3):
        with pytest.raises(ApiError):
            await authenticator.authenticate(Credentials("HTTP_User_1", "guess"))
    assert await authenticator.authenticate(Credentials("HTTP_User_1", "qwe123"), ATTACKER)
