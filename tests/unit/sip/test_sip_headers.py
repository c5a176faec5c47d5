"""Headers multimap: case-insensitivity, compact names, list splitting, mutation, safety."""

from __future__ import annotations

import pytest

from pypbx.sip.message import Headers, canonical_name


def test_compact_and_case_insensitive_lookup() -> None:
    h = Headers([("i", "abc@h"), ("v", "SIP/2.0/UDP a"), ("cseq", "1 INVITE"), ("X-Foo", "1")])
    assert h.get("Call-ID") == "abc@h"
    assert h.get("CALL-id") == "abc@h"
    assert h.get("i") == "abc@h"
    assert "via" in h and "V" in h and "Route" not in h
    assert h.items() == [
        ("Call-ID", "abc@h"),
        ("Via", "SIP/2.0/UDP a"),
        ("CSeq", "1 INVITE"),
        ("X-Foo", "1"),
    ]
    assert h.get("x-foo") == "1"
    assert h.get("Missing", "dflt") == "dflt"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
        ("c", "Content-Type"), ("f", "From"), ("s", "Subject"), ("k", "Supported"),
        ("t", "To"), ("o", "Event"), ("u", "Allow-Events"), ("r", "Refer-To"),
        ("b", "Referred-By"), ("x", "Session-Expires"), ("y", "Identity"),
        ("www-authenticate", "WWW-Authenticate"), ("CSEQ", "CSeq"), ("call-id", "Call-ID"),
        ("X-Custom-Thing", "X-Custom-Thing"), ("z", "z"),
    ],
)  # fmt: skip
def test_canonical_names(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_get_all_splits_list_headers_only() -> None:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2")
    h.add("Via", "SIP/2.0/TCP c")
    h.add("Contact", '"Doe, J" <sip:j@a>, <sip:k@b>')
    h.add("WWW-Authenticate", 'Digest realm="a, b", nonce="x", qop="auth,auth-int"')
    h.add("Date", "Sat, 13 Nov 2010 23:29:00 GMT")
    h.add("Allow", "INVITE, ACK,BYE")
    assert h.get_all("Via") == ["SIP/2.0/UDP a;branch=1", "SIP/2.0/UDP b;branch=2", "SIP/2.0/TCP c"]
    assert h.get_fields("Via") == [
        "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2",
        "SIP/2.0/TCP c",
    ]
    assert h.get("Via") == "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2"
    assert h.get_all("Contact") == ['"Doe, J" <sip:j@a>', "<sip:k@b>"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a, b", nonce="x", qop="auth,auth-int"']
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("Nope") == []


def test_set_replaces_in_place_and_remove() -> None:
    h = Headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3"), ("X-C", "4")])
    h.set("X-A", "x")
    assert h.items() == [("X-A", "x"), ("X-B", "2"), ("X-C", "4")]
    h.set("X-D", 5)
    assert h.items()[-1] == ("X-D", "5")
    h.remove("x-b")
    h.remove("nonexistent")
    assert list(h) == ["X-A", "X-C", "X-D"]
    assert len(h) == 3


def test_insert_first() -> None:
    h = Headers([("Max-Forwards", "70"), ("Via", "SIP/2.0/UDP b")])
    h.insert_first("Via", "SIP/2.0/UDP a")
    assert h.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert list(h) == ["Max-Forwards", "Via", "Via"]
    h.insert_first("Record-Route", "<sip:p;lr>")
    assert next(iter(h)) == "Record-Route"


def test_replace_all_keeps_position() -> None:
    h = Headers([("From", "<sip:a@b>"), ("Via", "v1, v2"), ("To", "<sip:c@d>"), ("Via", "v3")])
    h.replace_all("Via", ["n1", "n2"])
    assert h.items() == [("From", "<sip:a@b>"), ("Via", "n1"), ("Via", "n2"), ("To", "<sip:c@d>")]


def test_copy_and_equality() -> None:
    h = Headers([("Call-ID", "x")])
    c = h.copy()
    c.add("To", "<sip:a@b>")
    assert h != c
    assert Headers([("i", "x")]) == h
    assert h != "Call-ID: x"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "hi\r\nVia: SIP/2.0/UDP evil"),
        ("Subject", "line\nbreak"),
        ("Subject", "nul\x00"),
        ("Bad Name", "x"),
        ("Bad:Name", "x"),
        ("", "x"),
    ],
)
def test_rejects_injection(name: str, value: str) -> None:
    h = Headers()
    with pytest.raises(ValueError):
        h.add(name, value)
    with pytest.raises(ValueError):
        h.set(name, value)
    assert len(h) == 0
