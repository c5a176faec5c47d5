"""SipAuthenticator.authenticate_cached: the same answers as `authenticate`, from the store's
cache without awaiting, and None (nothing decided, nothing counted) when only the database
knows the name. Also the HA1 of plain-password extensions, remembered per password."""

from __future__ import annotations

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
SOURCE = "203.0.113.7"


class CacheStore:
    """Knows extension 1000; `complete` says whether a name it lacks is known to be absent."""

    def __init__(self) -> None:
        self.extension = ExtensionRecord(
            "1000", "SIP", username="1000", authorization_name="1000", password="pw-1"
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


@pytest.fixture
def store() -> CacheStore:
    return CacheStore()


@pytest.fixture
def auth(store: CacheStore) -> SipAuthenticator:
    verifier = DigestVerifier(REALM, NonceManager(b"k" * 32), ("MD5",))
    authenticator = SipAuthenticator(REALM, verifier, cast(Store, store))
    authenticator.bans = FailureBans(max_failures=2, ignore=())
    return authenticator


def register(cseq: int, authorization: str | None = None) -> Request:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {SOURCE}:5060;branch=z9hG4bK-c{cseq}",
        "From: <sip:1000@127.0.0.1>;tag=abc",
        "To: <sip:1000@127.0.0.1>",
        "Call-ID: cached-test",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    if authorization is not None:
        lines.insert(-1, f"Authorization: {authorization}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def challenge(auth: SipAuthenticator) -> Response:
    result = auth.authenticate_cached(register(1), proxy=False)
    assert result is not None and result.response is not None
    assert result.response.status == 401
    return result.response


def answer(response: Response, *, user: str = "1000", password: str = "pw-1", nc: int = 1) -> str:
    value = response.headers.get("WWW-Authenticate")
    assert value is not None
    return build_authorization(
        value,
        username=user,
        password=password,
        method="REGISTER",
        uri="sip:127.0.0.1",
        nc=nc,
        cnonce="0a4f113b",
    )


def test_a_cached_extension_is_authenticated_without_awaiting(
    auth: SipAuthenticator, store: CacheStore
) -> None:
    result = auth.authenticate_cached(register(2, answer(challenge(auth))), proxy=False)
    assert result is not None and result.response is None
    assert result.extension is store.extension  # the cache's own record, not a copy
    assert store.lookups == 0


def test_a_name_only_the_database_knows_is_left_to_authenticate(
    auth: SipAuthenticator, store: CacheStore
) -> None:
    store.cached = store.complete = False
    request = register(2, answer(challenge(auth), password="wrong"))
    assert auth.authenticate_cached(request, proxy=False) is None
    assert not auth.bans.banned(SOURCE, 0.0)  # nothing counted: authenticate decides


async def test_unknown_and_wrong_password_get_the_same_403_and_count(
    auth: SipAuthenticator,
) -> None:
    unknown = auth.authenticate_cached(
        register(2, answer(challenge(auth), user="9999")), proxy=False
    )
    wrong = auth.authenticate_cached(
        register(3, answer(challenge(auth), password="nope")), proxy=False
    )
    assert unknown is not None and wrong is not None
    assert unknown.extension is None and wrong.extension is None
    assert unknown.response is not None and wrong.response is not None
    assert (unknown.response.status, unknown.response.reason) == (403, "Forbidden")
    assert (wrong.response.status, wrong.response.reason) == (403, "Forbidden")
    assert auth.bans.banned(SOURCE, 0.0)  # two failures: the limit of this fixture


def test_a_replayed_nonce_count_is_rechallenged(auth: SipAuthenticator) -> None:
    authorization = answer(challenge(auth))
    first = auth.authenticate_cached(register(2, authorization), proxy=False)
    assert first is not None and first.extension is not None
    again = auth.authenticate_cached(register(3, authorization), proxy=False)
    assert again is not None and again.extension is None and again.response is not None
    assert again.response.status == 401
    assert ", stale=true" in (again.response.headers.get("WWW-Authenticate") or "")


def test_a_disabled_extension_fails_like_an_unknown_one(
    auth: SipAuthenticator, store: CacheStore
) -> None:
    store.extension.enabled = False
    result = auth.authenticate_cached(register(2, answer(challenge(auth))), proxy=False)
    assert result is not None and result.response is not None
    assert result.response.status == 403


async def test_a_changed_password_takes_effect_despite_the_remembered_ha1(
    auth: SipAuthenticator, store: CacheStore
) -> None:
    ok = await auth.authenticate(register(2, answer(challenge(auth))), proxy=False)
    assert ok.extension is not None
    store.extension.password = "pw-2"
    old = await auth.authenticate(register(3, answer(challenge(auth))), proxy=False)
    assert old.extension is None
    new = await auth.authenticate(
        register(4, answer(challenge(auth), password="pw-2")), proxy=False
    )
    assert new.extension is not None
