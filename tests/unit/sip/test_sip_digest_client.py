"""Client side of Digest: reading challenges, and the retry of a challenged request."""

from __future__ import annotations

import hashlib
import re

import pytest

from pypbx.sip.digest import (
    Challenge,
    DigestError,
    build_authorization,
    parse_credentials,
    select_challenge,
)
from pypbx.sip.digest_client import (
    DigestClient,
    UserCredentials,
    answer_challenge,
    answer_header_name,
    challenge_header_name,
)
from pypbx.sip.message import Request, Response, make_response, parse_message

# RFC 7616 §3.9.1 example values
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"

CREDS = UserCredentials("acct77", "s3cret")

REGISTER = (
    b"REGISTER sip:provider.example SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfirst;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:15551230000@provider.example>;tag=abc123\r\n"
    b"To: <sip:15551230000@provider.example>\r\n"
    b"Call-ID: reg-1@192.0.2.10\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b"Contact: <sip:15551230000@192.0.2.10:5060>\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)

INVITE = (
    b"INVITE sip:+3612345678@provider.example SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1000@192.0.2.10>;tag=fromtag\r\n"
    b"To: <sip:+3612345678@provider.example>\r\n"
    b"Call-ID: call-9@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:pypbx@192.0.2.10:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\n"
    b"v=0\n"
)


def _request(data: bytes = REGISTER) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def _challenge(request: Request, status: int, *values: str) -> Response:
    response = make_response(request, status, to_tag="srvtag")
    for value in values:
        response.headers.add(challenge_header_name(status), value)
    return response


def _md5_challenge(nonce: str = "n1", extra: str = "") -> str:
    return f'Digest realm="provider.example", nonce="{nonce}", algorithm=MD5, qop="auth"{extra}'


def _digest(hash_name: str, text: str) -> str:
    return hashlib.new(hash_name, text.encode()).hexdigest()


def _expected_response(request: Request, header: str, password: str, hash_name: str) -> str:
    """RFC 7616 §3.4.1 computed here from scratch, to check pypbx against."""
    creds = parse_credentials(request.headers.get(header) or "")
    ha1 = _digest(hash_name, f"{creds.username}:{creds.realm}:{password}")
    ha2 = _digest(hash_name, f"{request.method}:{request.uri}")
    return _digest(hash_name, f"{ha1}:{creds.nonce}:{creds.nc}:{creds.cnonce}:{creds.qop}:{ha2}")


# --- Challenge --------------------------------------------------------------------------------


def test_challenge_parse_reads_every_field() -> None:
    value = (
        f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm=sha-256, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}", stale=TRUE'
    )
    challenge = Challenge.parse(value)
    assert challenge == Challenge(
        raw=value,
        realm=RFC_REALM,
        nonce=RFC_NONCE,
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque=RFC_OPAQUE,
        stale=True,
    )
    assert challenge.supported


@pytest.mark.parametrize(
    ("value", "stale", "qop", "supported"),
    [
        ('Digest realm="r", nonce="n"', False, (), True),  # RFC 2069: no qop
        ('Digest realm="r", nonce="n", stale=false', False, (), True),
        ('Digest realm="r", nonce="n", stale="true"', True, (), True),
        ('Digest realm="r", nonce="n", qop="auth-int"', False, ("auth-int",), True),
        ('Digest realm="r", nonce="n", qop="auth-conf"', False, ("auth-conf",), False),
        ('Digest realm="r", nonce="n", algorithm=MD5-sess, qop=auth', False, ("auth",), True),
        ('Digest realm="r", nonce="n", algorithm=SHA-512-256', False, (), False),
        ('Digest realm="r", nonce="n", algorithm=AKAv1-MD5', False, (), False),
    ],
)
def test_challenge_flags(value: str, stale: bool, qop: tuple[str, ...], supported: bool) -> None:
    challenge = Challenge.parse(value)
    assert (challenge.stale, challenge.qop, challenge.supported) == (stale, qop, supported)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Basic realm="r"', "Unsupported authentication scheme 'Basic'"),
        ('Digest realm="r"', "Missing required parameter 'nonce'"),
        ('Digest nonce="n"', "Missing required parameter 'realm'"),
        ('Digest realm="r", nonce="n', "Unterminated quoted string"),
    ],
)
def test_challenge_parse_errors(value: str, message: str) -> None:
    with pytest.raises(DigestError) as info:
        Challenge.parse(value)
    assert str(info.value) == message


def test_select_challenge_prefers_sha256_and_skips_what_it_cannot_answer() -> None:
    md5 = 'Digest realm="r", nonce="a", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth"'
    values = [
        'Basic realm="r"',
        "Digest garbage",
        md5,
        'Digest realm="r", nonce="c", algorithm=SHA-512-256',
        sha,
    ]
    chosen = select_challenge(values)
    assert chosen is not None and chosen.nonce == "b"
    chosen = select_challenge([md5])
    assert chosen is not None and chosen.algorithm == "MD5"
    assert select_challenge(['Basic realm="r"', "Digest garbage"]) is None
    assert select_challenge([]) is None


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vector_through_challenge(algorithm: str, expected: str) -> None:
    challenge = select_challenge(
        [
            f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
            f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
        ]
    )
    assert challenge is not None
    value = build_authorization(
        challenge.raw,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC_CNONCE,
    )
    assert parse_credentials(value).response == expected


def test_header_names() -> None:
    assert (challenge_header_name(401), answer_header_name(401)) == (
        "WWW-Authenticate",
        "Authorization",
    )
    assert (challenge_header_name(407), answer_header_name(407)) == (
        "Proxy-Authenticate",
        "Proxy-Authorization",
    )


# --- answer_challenge -------------------------------------------------------------------------


def test_401_retry_is_a_new_transaction_of_the_same_request() -> None:
    request = _request()
    retry = answer_challenge(
        request, _challenge(request, 401, _md5_challenge()), CREDS, cnonce="cn", branch="z9hG4bKnew"
    )
    assert retry is not None
    assert retry.method == "REGISTER" and str(retry.uri) == "sip:provider.example"
    assert retry.call_id == request.call_id
    assert retry.from_addr.tag == "abc123"
    assert retry.to_addr.tag is None
    assert retry.cseq == (8, "REGISTER")
    assert retry.top_via.branch == "z9hG4bKnew"
    assert retry.top_via.params["rport"] is None
    assert retry.headers.get("Contact") == request.headers.get("Contact")
    assert retry.headers.get("Expires") == "3600"
    assert "Proxy-Authorization" not in retry.headers
    value = retry.headers.get("Authorization")
    digest = _expected_response(retry, "Authorization", "s3cret", "md5")
    assert value == (
        'Digest username="acct77", realm="provider.example", nonce="n1", '
        f'uri="sip:provider.example", response="{digest}", '
        'algorithm=MD5, cnonce="cn", qop=auth, nc=00000001'
    )
    # the original is untouched
    assert request.cseq == (7, "REGISTER") and "Authorization" not in request.headers
    assert request.top_via.branch == "z9hG4bKfirst"


def test_407_answer_goes_to_proxy_authorization_and_keeps_the_body() -> None:
    request = _request(INVITE)
    challenge = (
        'Digest realm="sbc.example", nonce="xyz", algorithm=SHA-256, qop="auth", opaque="o1"'
    )
    retry = answer_challenge(request, _challenge(request, 407, challenge), CREDS)
    assert retry is not None
    assert "Authorization" not in retry.headers
    creds = parse_credentials(retry.headers.get("Proxy-Authorization") or "")
    assert (creds.username, creds.realm, creds.algorithm, creds.opaque) == (
        "acct77",
        "sbc.example",
        "SHA-256",
        "o1",
    )
    assert creds.uri == "sip:+3612345678@provider.example"
    assert creds.response == _expected_response(retry, "Proxy-Authorization", "s3cret", "sha256")
    assert retry.body == b"v=0\n"
    assert retry.cseq == (2, "INVITE")
    assert retry.top_via.branch != request.top_via.branch
    assert retry.top_via.branch is not None and retry.top_via.branch.startswith("z9hG4bK")


def test_strongest_of_several_challenges_is_answered() -> None:
    request = _request()
    response = _challenge(
        request,
        401,
        _md5_challenge("weak"),
        'Digest realm="provider.example", nonce="strong", algorithm=SHA-256, qop="auth"',
    )
    retry = answer_challenge(request, response, CREDS)
    assert retry is not None
    creds = parse_credentials(retry.headers.get("Authorization") or "")
    assert (creds.nonce, creds.algorithm) == ("strong", "SHA-256")


def test_rfc2069_challenge_is_answered_without_qop() -> None:
    request = _request()
    response = _challenge(request, 401, 'Digest realm="old", nonce="n0"')
    retry = answer_challenge(request, response, CREDS)
    assert retry is not None
    creds = parse_credentials(retry.headers.get("Authorization") or "")
    assert (creds.qop, creds.nc, creds.cnonce) == (None, None, None)
    ha1 = _digest("md5", "acct77:old:s3cret")
    ha2 = _digest("md5", "REGISTER:sip:provider.example")
    assert creds.response == _digest("md5", f"{ha1}:n0:{ha2}")


def _answered(nonce: str = "n1", status: int = 401) -> Request:
    request = _request()
    retry = answer_challenge(request, _challenge(request, status, _md5_challenge(nonce)), CREDS)
    assert retry is not None
    return retry


def test_same_nonce_again_means_the_password_is_wrong() -> None:
    retry = _answered("n1")
    assert answer_challenge(retry, _challenge(retry, 401, _md5_challenge("n1")), CREDS) is None
    # even when the server claims the nonce is stale: it would loop forever
    stale = _challenge(retry, 401, _md5_challenge("n1", ", stale=true"))
    assert answer_challenge(retry, stale, CREDS) is None


def test_fresh_answer_refused_with_a_new_nonce_but_not_stale_is_final() -> None:
    retry = _answered("n1")
    assert answer_challenge(retry, _challenge(retry, 401, _md5_challenge("n2")), CREDS) is None


def test_stale_true_with_a_new_nonce_is_answered_again() -> None:
    retry = _answered("n1")
    again = answer_challenge(
        retry, _challenge(retry, 401, _md5_challenge("n2", ", stale=true")), CREDS
    )
    assert again is not None
    assert again.cseq == (9, "REGISTER")
    values = again.headers.get_all("Authorization")
    assert len(values) == 1  # the old answer for the realm is replaced, not kept
    assert parse_credentials(values[0]).nonce == "n2"


def test_answer_for_a_different_realm_or_header_does_not_count() -> None:
    retry = _answered("n1", status=407)  # Proxy-Authorization for provider.example
    response = _challenge(retry, 401, _md5_challenge("n1"))  # now the registrar, same nonce
    again = answer_challenge(retry, response, CREDS)
    assert again is not None
    assert "Proxy-Authorization" in again.headers and "Authorization" in again.headers
    # a second proxy realm: both Proxy-Authorization answers travel (RFC 3261 §22.3)
    other = _challenge(retry, 407, 'Digest realm="edge", nonce="e1", qop="auth"')
    both = answer_challenge(retry, other, CREDS)
    assert both is not None
    realms = [parse_credentials(v).realm for v in both.headers.get_all("Proxy-Authorization")]
    assert realms == ["provider.example", "edge"]


@pytest.mark.parametrize(
    "values",
    [
        [],
        ['Basic realm="x"'],
        ['Digest realm="r", nonce="n", algorithm=SHA-512-256'],
        ['Digest realm="r", nonce="n", qop="auth-conf"'],
    ],
)
def test_no_usable_challenge_means_no_retry(values: list[str]) -> None:
    request = _request()
    assert answer_challenge(request, _challenge(request, 401, *values), CREDS) is None


def test_only_401_and_407_are_challenges() -> None:
    request = _request()
    for status in (200, 403, 423, 500):
        response = _challenge(request, status)
        response.headers.add("WWW-Authenticate", _md5_challenge())
        assert answer_challenge(request, response, CREDS) is None


def test_credentials_are_quoted_not_injected() -> None:
    request = _request()
    evil = UserCredentials('a"b\\c', "pw")
    retry = answer_challenge(request, _challenge(request, 401, _md5_challenge()), evil)
    assert retry is not None
    assert parse_credentials(retry.headers.get("Authorization") or "").username == 'a"b\\c'
    bad = UserCredentials("a\r\nX-Evil: 1", "pw")
    assert answer_challenge(request, _challenge(request, 401, _md5_challenge()), bad) is None


def test_user_credentials_hide_the_password() -> None:
    assert "s3cret" not in repr(CREDS)


# --- DigestClient -----------------------------------------------------------------------------


def _nc(request: Request, header: str = "Authorization") -> str | None:
    value = request.headers.get(header)
    return parse_credentials(value).nc if value else None


def test_client_answers_in_advance_with_rising_nonce_count() -> None:
    client = DigestClient(CREDS)
    first = _request()
    client.prepare(first)
    assert "Authorization" not in first.headers
    retry = client.retry(first, _challenge(first, 401, _md5_challenge("n1")))
    assert retry is not None and _nc(retry) == "00000001"
    for expected in ("00000002", "00000003"):
        refresh = _request()
        client.prepare(refresh)
        assert _nc(refresh) == expected
        assert parse_credentials(refresh.headers.get("Authorization") or "").nonce == "n1"
        assert parse_credentials(refresh.headers.get("Authorization") or "").response == (
            _expected_response(refresh, "Authorization", "s3cret", "md5")
        )


def test_client_reanswers_an_advance_answer_refused_with_a_new_nonce() -> None:
    client = DigestClient(CREDS)
    first = _request()
    client.prepare(first)
    assert client.retry(first, _challenge(first, 401, _md5_challenge("n1"))) is not None
    refresh = _request()
    client.prepare(refresh)  # nc=2 with n1
    # Some servers re-challenge an old nonce without stale=true: a reused nonce may expire.
    again = client.retry(refresh, _challenge(refresh, 401, _md5_challenge("n2")))
    assert again is not None and _nc(again) == "00000001"
    assert client.retry(again, _challenge(again, 401, _md5_challenge("n3"))) is None
    assert client.refusal == "credentials rejected (401)"


def test_client_does_not_answer_rfc2069_challenges_in_advance() -> None:
    client = DigestClient(CREDS)
    first = _request()
    client.prepare(first)
    assert client.retry(first, _challenge(first, 401, 'Digest realm="r", nonce="n"')) is not None
    refresh = _request()
    client.prepare(refresh)
    assert "Authorization" not in refresh.headers


def test_client_bounds_rounds_against_endless_stale_challenges() -> None:
    client = DigestClient(CREDS, max_rounds=3)
    request = _request()
    client.prepare(request)
    for round_number in range(3):
        stale = _md5_challenge(f"n{round_number}", ", stale=true")
        retry = client.retry(request, _challenge(request, 401, stale))
        assert retry is not None
        request = retry
    final = _challenge(request, 401, _md5_challenge("n9", ", stale=true"))
    assert client.retry(request, final) is None
    assert client.refusal == "still challenged after 3 answers"
    # a refusal forgets the challenge: the next request goes without credentials
    fresh = _request()
    client.prepare(fresh)
    assert client.refusal is None and "Authorization" not in fresh.headers


def test_client_refusal_reasons() -> None:
    client = DigestClient(CREDS)
    request = _request()
    client.prepare(request)
    assert client.retry(request, _challenge(request, 401)) is None
    assert client.refusal == "no supported Digest challenge in the 401"
    retry = client.retry(request, _challenge(request, 407, _md5_challenge("p1")))
    assert retry is not None
    assert client.retry(retry, _challenge(retry, 407, _md5_challenge("p1"))) is None
    assert client.refusal == "credentials rejected (407 with the same nonce)"


def test_client_forget_and_arguments() -> None:
    client = DigestClient(CREDS)
    first = _request()
    client.prepare(first)
    assert client.retry(first, _challenge(first, 401, _md5_challenge())) is not None
    client.forget()
    again = _request()
    client.prepare(again)
    assert "Authorization" not in again.headers
    with pytest.raises(ValueError, match=r"^max_rounds must be at least 1$"):
        DigestClient(CREDS, max_rounds=0)


def test_prepare_replaces_stale_credentials_on_a_reused_request() -> None:
    client = DigestClient(CREDS)
    first = _request()
    client.prepare(first)
    retry = client.retry(first, _challenge(first, 401, _md5_challenge()))
    assert retry is not None
    client.prepare(retry)  # e.g. the caller resends the same object as a new request
    values = retry.headers.get_all("Authorization")
    assert len(values) == 1 and re.search(r"nc=00000002", values[0])
