"""The office-user verification cache: a success is trusted for a limited time only, never
outlives a password change or the user's removal, and failures are never cached (each one
pays the full hash and counts towards a ban)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from api_support import FakeStore

import pypbx.api.auth as auth_module
from pypbx.api.auth import DEFAULT_CACHE_TTL, Authenticator, Credentials
from pypbx.api.context import ApiStore
from pypbx.api.status import ApiError, Status
from pypbx.pbx.abuse import FailureBans
from pypbx.store.passwords import verify_password
from pypbx.store.records import OfficeUserRecord

GOOD = Credentials("HTTP_User_1", "qwe123")
WRONG = Credentials("HTTP_User_1", "guess")
ATTACKER = "203.0.113.50"


def as_store(users: FakeStore) -> ApiStore:
    """The fake has just what authentication calls (not e.g. query_history)."""
    return cast(ApiStore, users)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingVerify:
    def __init__(self) -> None:
        self.calls = 0
        self.real = verify_password

    def __call__(self, password: str, stored: str) -> bool:
        self.calls += 1
        return self.real(password, stored)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingVerify:
    counter = CountingVerify()
    monkeypatch.setattr(auth_module, "verify_password", counter)
    return counter


@pytest.fixture
def users(store: FakeStore, password_hashes: dict[str, str]) -> FakeStore:
    store.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"])
    return store


async def status_of(authenticator: Authenticator, credentials: Credentials) -> Status:
    try:
        await authenticator.authenticate(credentials, ATTACKER)
    except ApiError as exc:
        return exc.status
    return Status.OK


def test_default_ttl_is_a_minute() -> None:
    assert DEFAULT_CACHE_TTL == 60.0


async def test_success_is_trusted_until_the_ttl_ends(
    users: FakeStore, counting: CountingVerify
) -> None:
    clock = Clock()
    authenticator = Authenticator(as_store(users), cache_ttl=60.0, clock=clock)
    assert await status_of(authenticator, GOOD) is Status.OK
    clock.now += 59.9
    assert await status_of(authenticator, GOOD) is Status.OK
    assert counting.calls == 1
    clock.now += 0.1  # 60 s after the verification: verified again, then trusted anew
    assert await status_of(authenticator, GOOD) is Status.OK
    assert counting.calls == 2
    clock.now += 59.0
    assert await status_of(authenticator, GOOD) is Status.OK
    assert counting.calls == 2


async def test_every_request_rereads_the_user(users: FakeStore) -> None:
    authenticator = Authenticator(as_store(users), clock=Clock())
    for _ in range(3):
        assert await status_of(authenticator, GOOD) is Status.OK
    assert users.get_user_calls == 3


async def test_removed_user_is_refused_while_cached(
    users: FakeStore, counting: CountingVerify
) -> None:
    authenticator = Authenticator(as_store(users), clock=Clock())
    assert await status_of(authenticator, GOOD) is Status.OK
    removed = users.users.pop("HTTP_User_1")
    assert await status_of(authenticator, GOOD) is Status.AUTHENTICATION_FAILED
    assert counting.calls == 2  # the unknown user cost a (dummy) verification too
    # Re-created with the same password hash, the user is known again.
    users.users["HTTP_User_1"] = removed
    assert await status_of(authenticator, GOOD) is Status.OK


async def test_password_change_invalidates_the_cached_success(
    users: FakeStore, counting: CountingVerify, password_hashes: dict[str, str]
) -> None:
    authenticator = Authenticator(as_store(users), clock=Clock())
    assert await status_of(authenticator, GOOD) is Status.OK
    users.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["abc123"])
    assert await status_of(authenticator, GOOD) is Status.AUTHENTICATION_FAILED
    assert await status_of(authenticator, Credentials("HTTP_User_1", "abc123")) is Status.OK
    assert counting.calls == 3
    cache: Any = authenticator._verified
    assert len(cache) == 1  # the stale entry of the old password went with its failure


async def test_right_withdrawn_while_cached_is_306(
    users: FakeStore, password_hashes: dict[str, str]
) -> None:
    authenticator = Authenticator(as_store(users), clock=Clock())
    assert await status_of(authenticator, GOOD) is Status.OK
    users.users["HTTP_User_1"] = OfficeUserRecord(
        "HTTP_User_1", password_hashes["qwe123"], may_use_api=False
    )
    assert await status_of(authenticator, GOOD) is Status.FORBIDDEN_USER


async def test_failures_are_never_cached_and_count_towards_a_ban(
    users: FakeStore, counting: CountingVerify
) -> None:
    authenticator = Authenticator(as_store(users), clock=Clock())
    authenticator.bans = FailureBans(ignore=(), max_failures=3)
    assert await status_of(authenticator, GOOD) is Status.OK
    for _ in range(3):
        assert await status_of(authenticator, WRONG) is Status.AUTHENTICATION_FAILED
    assert counting.calls == 4
    # Banned now: even the cached right password is refused, without hashing.
    assert await status_of(authenticator, GOOD) is Status.AUTHENTICATION_FAILED
    assert counting.calls == 4


async def test_cache_holds_no_password(users: FakeStore) -> None:
    authenticator = Authenticator(as_store(users), clock=Clock())
    await authenticator.authenticate(GOOD)
    cache: Any = authenticator._verified
    ((key, (stored_hash, expires)),) = cache.items()
    assert isinstance(key, bytes) and len(key) == 32 and b"qwe123" not in key
    assert stored_hash == users.users["HTTP_User_1"].password_hash
    assert "qwe123" not in stored_hash
    assert expires == 1000.0 + DEFAULT_CACHE_TTL
