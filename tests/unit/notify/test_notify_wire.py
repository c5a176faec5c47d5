"""The wire form of a notification: field order and encoding, headers, target URL parsing."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import pytest

from pypbx.notify import NotifySettings
from pypbx.notify.wire import (
    InvalidTarget,
    base_headers,
    encode_form,
    form_pairs,
    parse_target,
    redact_url,
    request_headers,
)


def test_name_first_then_fields_in_given_order() -> None:
    pairs = form_pairs("IncomingCall", [("CallId", "Kq7Zx2"), ("Caller", "1442"), ("A", "")])
    assert pairs == (
        ("NotificationName", "IncomingCall"),
        ("CallId", "Kq7Zx2"),
        ("Caller", "1442"),
        ("A", ""),
    )


def test_mapping_keeps_insertion_order() -> None:
    pairs = form_pairs("GoTo", {"CallId": "x", "ApiExtension": "9994", "Caller": "1442"})
    assert [k for k, _ in pairs] == ["NotificationName", "CallId", "ApiExtension", "Caller"]


def test_notification_name_in_fields_is_dropped() -> None:
    pairs = form_pairs("CallChanged", [("NotificationName", "Forged"), ("CallId", "c")])
    assert pairs == (("NotificationName", "CallChanged"), ("CallId", "c"))


def test_repeated_fields_are_kept() -> None:
    assert form_pairs("X", [("a", "1"), ("a", "2")])[1:] == (("a", "1"), ("a", "2"))


def test_encoding_matches_ozeki_capture() -> None:
    body = encode_form(
        form_pairs(
            "RoutingInterception",
            [
                ("CallerID", "1442"),
                ("OriginalDialedNumber", "81234567"),
                ("LastDialedNumber", "81234567"),
                ("LastCalledExtension", ""),
                ("LastCallState", "Calling"),
                ("CallerExtension", "1442"),
            ],
        )
    )
    assert body == (
        b"NotificationName=RoutingInterception&CallerID=1442&OriginalDialedNumber=81234567"
        b"&LastDialedNumber=81234567&LastCalledExtension=&LastCallState=Calling"
        b"&CallerExtension=1442"
    )


def test_encoding_escapes_and_utf8() -> None:
    pairs = form_pairs(
        "IncomingSMS",
        [("StartTime", "2013-07-01T10:49:07.9558+02:00"), ("Message", "héllo w&rld=1/ü")],
    )
    body = encode_form(pairs)
    assert body == (
        b"NotificationName=IncomingSMS&StartTime=2013-07-01T10%3A49%3A07.9558%2B02%3A00"
        b"&Message=h%C3%A9llo+w%26rld%3D1%2F%C3%BC"
    )
    assert tuple(parse_qsl(body.decode(), keep_blank_values=True)) == pairs


def test_base_headers() -> None:
    assert base_headers(NotifySettings(user_agent="pypbx/9")) == {
        "Cache-Control": "no-store,no-cache",
        "Pragma": "no-cache",
        "User-Agent": "pypbx/9",
    }


def test_request_headers_unsigned_without_secret() -> None:
    assert request_headers(NotifySettings(), b"x", now=1.0) == base_headers(NotifySettings())


def test_request_headers_signed_with_secret() -> None:
    headers = request_headers(NotifySettings(secret="k"), b"x", now=1700000000.5)
    assert headers["X-Pypbx-Timestamp"] == "1700000000"
    assert headers["X-Pypbx-Signature"].startswith("sha256=")
    assert len(headers["X-Pypbx-Signature"]) == len("sha256=") + 64


def test_plain_target() -> None:
    target = parse_target("http://app.example/routing.php")
    assert str(target) == "http://app.example/routing.php"
    assert target.authorization is None


def test_query_string_kept_byte_for_byte() -> None:
    raw = "http://app.example/cc.php?AppLocation=Main%20St&AppDate=2013-07-01+10%3A00&x=%7E&flag"
    target = parse_target(raw)
    assert target.url.raw_path_qs == (
        "/cc.php?AppLocation=Main%20St&AppDate=2013-07-01+10%3A00&x=%7E&flag"
    )
    assert str(target) == raw


def test_unencoded_url_is_quoted() -> None:
    target = parse_target("http://app.example/a b.php?name=José")
    assert target.url.raw_path_qs == "/a%20b.php?name=Jos%C3%A9"


def test_credentials_become_basic_auth_and_leave_the_url() -> None:
    target = parse_target("https://app%40corp:s3cr%3At@app.example:8443/hook?id=1")
    assert str(target) == "https://app.example:8443/hook?id=1"
    assert target.authorization == "Basic " + base64.b64encode(b"app@corp:s3cr:t").decode()
    assert "s3cr" not in repr(target)


def test_user_without_password() -> None:
    target = parse_target("http://bob@app.example/")
    assert target.authorization == "Basic " + base64.b64encode(b"bob:").decode()
    assert str(target) == "http://app.example/"


def test_utf8_credentials() -> None:
    target = parse_target("http://J%C3%B6rg:p%C3%A4ss@app.example/")
    assert target.authorization == "Basic " + base64.b64encode("Jörg:päss".encode()).decode()


def test_fragment_is_not_sent() -> None:
    assert str(parse_target("http://app.example/p?q=1#top")) == "http://app.example/p?q=1"


def test_ipv6_host() -> None:
    assert str(parse_target("http://[::1]:8080/x?a=%41")) == "http://[::1]:8080/x?a=%41"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ftp://app.example/x", "unsupported URL scheme 'ftp'"),
        ("/relative/path", "unsupported URL scheme ''"),
        ("", "unsupported URL scheme ''"),
        ("http:///nohost", "URL has no host"),
        (
            "http://app.example:notaport/",
            "malformed URL: Invalid URL: port can't be converted to integer",
        ),
        ("http://a%3Ab:pw@app.example/", "user name in URL contains ':'"),
    ],
)
def test_invalid_targets(raw: str, message: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        parse_target(raw)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("raw", "redacted"),
    [
        ("http://u:pw@h:notaport/", "http://u:***@h:notaport/"),
        ("http://u@h/", "http://u@h/"),
        ("http://h/p?a=b:c@d", "http://h/p?a=b:c@d"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(raw: str, redacted: str) -> None:
    assert redact_url(raw) == redacted
