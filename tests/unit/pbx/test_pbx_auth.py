"""SipAuthenticator. Digest nonces: a replayed nonce count and an expired nonce are
re-challenged with stale=true (never accepted), a nonce we never issued is a failed login
(403, counted towards a ban). `authenticate_cached`: the same answers from the store's cache
without awaiting, and None (nothing decided, nothing counted) when only the database knows
the name. The HA1 of plain-password extensions, remembered per password."""

from __future__ import annotations

import re
from typing import cast

import pytest

from pypbx.pbx.abuse import FailureBans
from pypbx.pbx.auth import SipAuthenticator
from pypbx.sip.digest import DigestVerifier, NonceManager, build_authorization
from pypbx.sip.message import Request, Response
from pypbx.sip.parser import parse_message
from pypbx.store.records import ExtensionRecord
from pypbx.store.store import Store

REALM = "pypbx"
SOURCE = "203.0.113.5"
PASSWORD = "pw-1000"


class FakeStore:
    """Knows extension 1000; `cached` says whether its cache holds it, `complete` whether a
    name the cache lacks is known to be absent."""

    def __init__(self) -> None:
        self.extension = ExtensionRecord(
            "1000", "SIP", username="1000", authorization_name="1000", password=PASSWORD
        )
        self.cached = True
        self.complete = True
        self.lookups = 0

    async def find_extension_by_auth_name(self, name: str) -> ExtensionRecord | None:
        self.lookups += 1
        return self.extension if name == "1000" else None

    def cached_extension_by_auth_name(self, name: str) -> tuple[bool, ExtensionRecord | None]:
        if name == "1000" and self.cached:
            return True, self.extension
        return self.complete, None


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("pypbx.pbx.auth.time.time", clock)
    return clock


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def auth(store: FakeStore) -> SipAuthenticator:
    verifier = DigestVerifier(REALM, NonceManager(b"k" * 32, lifetime=300.0), ("MD5",))
    authenticator = SipAuthenticator(REALM, verifier, cast(Store, store))
    authenticator.bans = FailureBans(max_failures=3, ignore=())
    return authenticator


def register(cseq: int, authorization: str | None = None) -> Request:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {SOURCE}:5060;branch=z9hG4bK-{cseq}",
        "From: <sip:1000@127.0.0.1>;tag=abc",
        "To: <sip:1000@127.0.0.1>",
        "Call-ID: replay-test",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    if authorization is not None:
        lines.insert(-1, f"Authorization: {authorization}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def answer(
    challenge: Response, *, nc: int = 1, password: str = PASSWORD, user: str = "1000"
) -> str:
    value = challenge.headers.get("WWW-Authenticate")
    assert value is not None, challenge
    return build_authorization(
        value,
        username=user,
        password=password,
        method="REGISTER",
        uri="sip:127.0.0.1",
        nc=nc,
        cnonce="0a4f113b",
    )


def stale(response: Response | None) -> bool:
    assert response is not None
    value = response.headers.get("WWW-Authenticate") or ""
    return response.status == 401 and ", stale=true" in value


async def challenge(auth: SipAuthenticator) -> Response:
    result = await auth.authenticate(register(1), proxy=False)
    assert result.response is not None and result.response.status == 401
    assert not stale(result.response)
    return result.response


async def test_a_replayed_nonce_count_is_rechallenged_not_accepted(
    auth: SipAuthenticator, clock: Clock
) -> None:
    authorization = answer(await challenge(auth))
    first = await auth.authenticate(register(2, authorization), proxy=False)
    assert first.extension is not None and first.extension.id == "1000"
    replayed = await auth.authenticate(register(2, authorization), proxy=False)
    assert replayed.extension is None
    assert stale(replayed.response)
    assert not auth.bans.banned(SOURCE, 0.0)


async def test_an_older_nonce_count_is_a_replay_too(auth: SipAuthenticator, clock: Clock) -> None:
    response = await challenge(auth)
    ok = await auth.authenticate(register(2, answer(response, nc=5)), proxy=False)
    assert ok.extension is not None
    older = await auth.authenticate(register(3, answer(response, nc=4)), proxy=False)
    assert older.extension is None and stale(older.response)
    newer = await auth.authenticate(register(4, answer(response, nc=6)), proxy=False)
    assert newer.extension is not None


async def test_an_expired_nonce_with_the_right_password_is_stale(
    auth: SipAuthenticator, clock: Clock
) -> None:
    response = await challenge(auth)
    clock.now += 301
    result = await auth.authenticate(register(2, answer(response)), proxy=False)
    assert result.extension is None
    assert stale(result.response)
    again = register(3, answer(cast(Response, result.response)))
    fresh = await auth.authenticate(again, proxy=False)
    assert fresh.extension is not None


async def test_an_expired_nonce_with_a_wrong_password_is_a_failure(
    auth: SipAuthenticator, clock: Clock
) -> None:
    response = await challenge(auth)
    clock.now += 301
    result = await auth.authenticate(register(2, answer(response, password="x")), proxy=False)
    assert result.response is not None and result.response.status == 403


async def test_a_nonce_we_never_issued_is_a_failed_login(
    auth: SipAuthenticator, clock: Clock
) -> None:
    response = await challenge(auth)
    value = answer(response)
    forged = re.sub(r'nonce="[^"]+"', f'nonce="{"A" * 43}"', value)
    foreign_verifier = DigestVerifier(REALM, NonceManager(b"x" * 32), ("MD5",))
    foreign = answer(_as_challenge(foreign_verifier.challenges(clock.now)[0]))
    for attempt, authorization in enumerate((forged, foreign, forged), start=2):
        result = await auth.authenticate(register(attempt, authorization), proxy=False)
        assert result.extension is None
        assert result.response is not None and result.response.status == 403
    assert auth.bans.banned(SOURCE, 0.0)  # three failures: the limit of this fixture


def _as_challenge(value: str) -> Response:
    response = Response(401)
    response.headers.add("WWW-Authenticate", value)
    return response


# ---------------------------------------------------------------- authenticate_cached
def cached_challenge(auth: SipAuthenticator) -> Response:
    result = auth.authenticate_cached(register(1), proxy=False)
    assert result is not None and result.response is not None
    assert result.response.status == 401
    return result.response


def test_a_cached_extension_is_authenticated_without_awaiting(
    auth: SipAuthenticator, store: FakeStore
) -> None:
    result = auth.authenticate_cached(register(2, answer(cached_challenge(auth))), proxy=False)
    assert result is not None and result.response is None
    assert result.extension is store.extension  # the cache's own record, not a copy
    assert store.lookups == 0


def test_a_name_only_the_database_knows_is_left_to_authenticate(
    auth: SipAuthenticator, store: FakeStore
) -> None:
    store.cached = store.complete = False
    request = register(2, answer(cached_challenge(auth), password="wrong"))
    assert auth.authenticate_cached(request, proxy=False) is None
    assert not auth.bans.banned(SOURCE, 0.0)  # nothing counted: authenticate decides


def test_unknown_and_wrong_password_get_the_same_403_and_count(auth: SipAuthenticator) -> None:
    attempts = [
        register(2, answer(cached_challenge(auth), user="9999")),
        register(3, answer(cached_challenge(auth), password="nope")),
        register(4, answer(cached_challenge(auth), user="9998")),
    ]
    for request in attempts:
        result = auth.authenticate_cached(request, proxy=False)
        assert result is not None and result.extension is None
        assert result.response is not None
        assert (result.response.status, result.response.reason) == (403, "Forbidden")
    assert auth.bans.banned(SOURCE, 0.0)  # three failures: the limit of this fixture


def test_a_replayed_nonce_count_is_rechallenged_from_the_cache_too(
    auth: SipAuthenticator,
) -> None:
    authorization = answer(cached_challenge(auth))
    first = auth.authenticate_cached(register(2, authorization), proxy=False)
    assert first is not None and first.extension is not None
    again = auth.authenticate_cached(register(3, authorization), proxy=False)
    assert again is not None and again.extension is None
    assert stale(again.response)


def test_a_disabled_extension_fails_like_an_unknown_one(
    auth: SipAuthenticator, store: FakeStore
) -> None:
    store.extension.enabled = False
    result = auth.authenticate_cached(register(2, answer(cached_challenge(auth))), proxy=False)
    assert result is not None and result.response is not None
    assert result.response.status == 403


async def test_a_changed_password_takes_effect_despite_the_remembered_ha1(
    auth: SipAuthenticator, store: FakeStore
) -> None:
    ok = await auth.authenticate(register(2, answer(await challenge(auth))), proxy=False)
    assert ok.extension is not None
    store.extension.password = "pw-2"
    old = await auth.authenticate(register(3, answer(await challenge(auth))), proxy=False)
    assert old.extension is None
    new = await auth.authenticate(
        register(4, answer(await challenge(auth), password="pw-2")), proxy=False
    )
    assert new.extension is not None
