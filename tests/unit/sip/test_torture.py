"""RFC 4475 (SIP torture messages) and RFC 5118 (IPv6 torture messages) against the parser.

The vectors in ``torture/`` are the RFCs' own bit-exact archives (Appendix A of each RFC,
base64 gzip tar), unpacked unchanged and pinned by ``SHA256SUMS``.  Each test names the
reaction the RFC prescribes and asserts the parser verdict that produces it in our stack
(``pypbx.net.stack.on_data``): a message (handed to the transaction layer), a
``SipParseError`` carrying the request (answered with ``make_response(err.request, ...)``),
or one without a request (dropped).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

import pytest

from pypbx.sip.digest import DigestError, parse_credentials
from pypbx.sip.message import (
    Address,
    Message,
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
)
from pypbx.sip.sdp import SessionDescription
from pypbx.sip.transaction import RequestReceived, TransactionLayer, via_destination

TORTURE = Path(__file__).parent / "torture"

RFC4475_VALID = (
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason",
)  # fmt: skip
RFC4475_INVALID = (
    "badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri",
    "lwsstart", "trws", "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers",
    "mismatch01", "mismatch02", "bigcode",
)  # fmt: skip
RFC4475_SEMANTIC = (
    "badbranch", "insuf", "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01",
    "multi01", "mcl01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01",
    "inv2543",
)  # fmt: skip
RFC5118 = (
    "ipv6-good", "ipv6-bad", "port-ambiguous", "port-unambiguous",
    "via-received-param-with-delim", "via-received-param-no-delim", "ipv6-in-sdp",
    "mult-ip-in-header", "mult-ip-in-sdp", "ipv4-mapped-ipv6", "ipv6-bug-abnf-3-colons",
    "ipv6-correct-abnf-2-colons",
)  # fmt: skip
ALL = RFC4475_VALID + RFC4475_INVALID + RFC4475_SEMANTIC + RFC5118


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def parsed(name: str) -> Request | Response:
    return parse_message(load(name))


def request(name: str) -> Request:
    message = parsed(name)
    assert isinstance(message, Request)
    return message


def rejected(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    return info.value


def wire5118(name: str) -> bytes:
    """RFC 5118's archive as wire bytes: CRLF line ends and a Content-Length that fits.

    The archive (unlike RFC 4475's) uses bare LF, the two §4.10 files lack the empty line,
    and the SDP messages declare Content-Lengths that match neither LF nor CRLF bodies
    (ipv6-in-sdp says 268 for a 242-byte body).  Only line ends and that count change.
    """
    text = load(name).replace(b"\n", b"\r\n")
    head, sep, body = text.partition(b"\r\n\r\n")
    if not sep:
        head = head.removesuffix(b"\r\n")
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
    return head + b"\r\n\r\n" + body


def test_corpus_is_complete_and_bit_exact() -> None:
    """49 referenced RFC 4475 messages (archive's test.dat is unreferenced), 12 of RFC 5118."""
    assert len(set(ALL)) == len(ALL) == 49 + 12
    on_disk = sorted(path.stem for path in TORTURE.glob("*.dat"))
    assert on_disk == sorted(ALL)
    sums: dict[str, str] = {}
    for line in (TORTURE / "SHA256SUMS").read_text().splitlines():
        digest, file_name = line.split("  ")
        sums[file_name] = digest
    for name in ALL:
        assert hashlib.sha256(load(name)).hexdigest() == sums[f"{name}.dat"], name


def test_valid_hashes_match_an_independent_decode() -> None:
    """Two RFC 4475 vectors whose SHA-256 was published by another decoder of Appendix A."""
    assert hashlib.sha256(load("wsinv")).hexdigest().startswith("d6f6cdee99cd0a1f")
    assert hashlib.sha256(load("intmeth")).hexdigest().startswith("b957a8292c1c0a98")


# -- RFC 4475 §3.1.1: valid messages parse, and re-parse equal after serialising -----------


@pytest.mark.parametrize("name", RFC4475_VALID)
def test_valid_messages_parse_and_round_trip(name: str) -> None:
    message = parsed(name)
    again = parse_message(message.serialize())
    assert again == message
    assert parse_message(again.serialize()) == again
    for view in ("vias", "contacts", "routes", "record_routes"):
        getattr(message, view)  # every view of a valid message must be readable


def test_wsinv_short_tortuous_invite() -> None:
    m = request("wsinv")
    assert m.method == "INVITE"
    assert (m.uri.user, m.uri.host, m.uri.params) == (
        "vivekg", "chair-dnrc.example.com", {"unknownparam": None},
    )  # fmt: skip
    assert m.to_addr.display_name is None and m.to_addr.tag == "1918181833n"
    assert m.to_addr.uri.host == "chair-dnrc.example.com"
    assert m.from_addr.display_name == 'J Rosenberg \\"'  # quoted-pairs undone
    assert m.from_addr.tag == "98asjd8"
    assert m.max_forwards == 68 and m.cseq == (9, "INVITE")
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert [(v.transport, v.host, v.port, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", None, "390skdjuw"),
        ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""  # "s :" with nothing after it
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    # Unknown header: kept as an opaque value, not split on ',' or ';'.
    assert m.headers.get_all("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    assert m.routes[0].uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.content_type == "application/sdp" and len(m.body) == 150


def test_intmeth_wide_range_of_valid_characters() -> None:
    m = request("intmeth")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method and m.cseq == (139122385, method)  # % is no escape here
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com" and not m.uri.headers
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"  # quoted-pair controls
    assert m.to_addr.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_addr.params == {"fromparam''~+*_!.-%": '"работающий"', "tag": "_token~1'+`*%!-."}
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    # Written back through Address, the control characters stay quoted-pairs and re-parse.
    copy = m.copy()
    copy.to_addr = m.to_addr.with_tag("t1")
    assert parse_message(copy.serialize()).to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"


def test_esc01_escapes_are_kept_not_decoded() -> None:
    m = request("esc01")
    assert (m.uri.user, m.uri.host) == ("sips%3Auser%40example.com", "example.net")
    assert m.to_addr.uri.user == "%75se%72"
    assert m.from_addr.uri.user == "I%20have%20spaces" and m.from_addr.tag == "938"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact "i:"
    assert m.content_type == "application/sdp"  # compact "C:"
    (contact,) = m.contacts  # folded onto a continuation line
    assert contact.uri.user == "cal%6Cer"
    assert contact.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}


def test_escnull_escaped_nulls_in_uris() -> None:
    m = request("escnull")
    assert m.to_addr.uri.user == "null-%00-null" and m.from_addr.uri.user == "null-%00-null"
    assert [c.uri.user for c in m.contacts] == ["%00", "%00%00"]


def test_esc02_percent_that_is_no_escape() -> None:
    m = request("esc02")
    assert m.method == "RE%47IST%45R" and m.cseq == (29344, "RE%47IST%45R")  # not REGISTER
    assert m.to_addr.display_name == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    # "C%6Fntact" is an unknown header, not a third Contact.
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_space_before_angle_bracket() -> None:
    m = request("lwsdisp")
    assert (m.from_addr.display_name, m.from_addr.uri.user, m.from_addr.tag) == (
        "caller", "caller", "323",
    )  # fmt: skip


def test_longreq_long_values() -> None:
    m = request("longreq")
    display = m.to_addr.display_name
    assert display is not None and display.startswith("I have a user name of extremeextreme")
    assert display.endswith(" proportion")
    assert m.to_addr.uri.port == 6000 and len(m.to_addr.uri.params) == 3
    assert m.from_addr.tag is not None and len(m.from_addr.tag) == 155
    assert m.call_id.startswith("longreq.onereally") and m.call_id.endswith("longcallid")
    assert len(m.vias) == 34
    assert m.vias[0].host == "sip33.example.com" and m.vias[-1].host == "host.example.com"
    (contact,) = m.contacts
    assert contact.uri.host == "host5.example.net"


def test_dblreq_trailing_octets_are_ignored() -> None:
    m = request("dblreq")
    assert m.method == "REGISTER" and m.body == b""  # the second request in the datagram
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_semicolons_in_user_part() -> None:
    m = request("semiuri")
    assert (m.uri.user, m.uri.host, m.uri.params) == (
        "user;par=u%40example.net", "example.com", {},
    )  # fmt: skip
    assert m.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag",
    ]  # fmt: skip


def test_transports_varied_and_unknown() -> None:
    m = request("transports")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_multipart_body_is_untouched() -> None:
    data = load("mpart01")
    m = request("mpart01")
    assert m.content_type == "multipart/mixed" and len(m.body) == 553
    assert data.endswith(m.body) and b"\r\n" in m.body


def test_unreason_and_noreason_reason_phrases() -> None:
    unusual = parsed("unreason")
    assert isinstance(unusual, Response) and unusual.status == 200
    assert unusual.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    empty = parsed("noreason")
    assert isinstance(empty, Response) and (empty.status, empty.reason) == (100, "")


# -- RFC 4475 §3.1.2: invalid messages ----------------------------------------------------

# name -> (reason, status) for requests answered; (reason, None) for dropped messages.
REJECTED = {
    # §3.1.2.1 "should respond with a 400": empty Via values after a good top Via.
    "badinv01": ("Bad Via", 400),
    # §3.1.2.2 over UDP "should respond with a 400".
    "clerr": ("Content-Length mismatch", 400),
    # §3.1.2.3 "should respond with an error".
    "ncl": ("Bad Content-Length", 400),
    # §3.1.2.4 "should respond with a 400 Bad Request due to the CSeq error".
    "scalar02": ("Bad CSeq", 400),
    # §3.1.2.5 a response: "will simply discard it".
    "scalarlg": ("Bad CSeq", None),
    # §3.1.2.6 "should return a 400 Bad Request error".
    "quotbal": ("Bad To", 400),
    # §3.1.2.7 "reasonable always to reject ... with a 400".
    "ltgtruri": ("Bad Request-URI", 400),
    # §3.1.2.8 "should respond with a 400 Bad Request".
    "lwsruri": ("Bad Request-URI", 400),
    # §3.1.2.16 "should respond to the request with a 505".
    "badvers": ("Unsupported SIP version", 505),
    # §3.1.2.17 "will respond with a 400"; §3.1.2.18 "a 400 Bad Request is also acceptable".
    "mismatch01": ("CSeq method mismatch", 400),
    "mismatch02": ("CSeq method mismatch", 400),
    # §3.1.2.19 a response code > 699: "should simply drop it".
    "bigcode": ("Bad status line", None),
    # §3.3.1 "Ideally, it will respond with a 400".
    "insuf": ("Missing From", 400),
    # §3.3.8 "would respond with a 400".
    "multi01": ("Duplicate From", 400),
    # §3.3.9 two Content-Length values: 400.
    "mcl01": ("Bad Content-Length", 400),
}


@pytest.mark.parametrize(("name", "expected"), list(REJECTED.items()))
def test_invalid_messages_get_the_prescribed_verdict(
    name: str, expected: tuple[str, int | None]
) -> None:
    reason, status = expected
    error = rejected(load(name))
    assert error.reason == reason
    if status is None:
        assert error.request is None  # the stack drops it
    else:
        assert error.status == status
        assert isinstance(error.request, Request)  # the stack answers it
        response = make_response(error.request, status, error.reason)
        assert response.headers.get_fields("Via") == error.request.headers.get_fields("Via")


def crlf(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


def test_quotbal_full_400_response() -> None:
    """What the stack sends back: the broken To is echoed as received (§8.2.6.2)."""
    error = rejected(load("quotbal"))
    assert error.request is not None
    assert make_response(error.request, 400, error.reason).serialize() == crlf(
        "SIP/2.0 400 Bad To",
        "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
        "From: sip:caller@example.net;tag=93334",
        'To: "Mr. J. User <sip:j.user@example.com>',
        "Call-ID: quotbal.aksdj",
        "CSeq: 8 INVITE",
        "Content-Length: 0",
        "",
    )


def test_scalar02_full_400_response_and_clamped_scalars() -> None:
    error = rejected(load("scalar02"))
    request = error.request
    assert request is not None
    # The other overlarge values are survivable, as §3.1.2.4 allows.
    assert request.max_forwards == 300 and request.expires == 2**32 - 1
    assert make_response(request, 400, error.reason).serialize() == crlf(
        "SIP/2.0 400 Bad CSeq",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3",
        "From: <sip:user@example.com>;tag=239232jh3",
        "To: <sip:user@example.com>",
        "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32",
        "CSeq: 36893488147419103232 REGISTER",
        "Content-Length: 0",
        "",
    )


def test_insuf_full_400_response_without_the_missing_headers() -> None:
    error = rejected(load("insuf"))
    assert error.request is not None
    assert make_response(error.request, 400, error.reason).serialize() == crlf(
        "SIP/2.0 400 Missing From",
        "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
        "CSeq: 193942 INVITE",
        "Content-Length: 0",
        "",
    )


def test_badvers_full_505_response() -> None:
    error = rejected(load("badvers"))
    assert error.request is not None and error.request.method == "OPTIONS"
    assert make_response(error.request, error.status).serialize() == crlf(
        "SIP/2.0 505 Version Not Supported",
        "Via: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
        "From: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe",
        "To: T. Watson <sip:t.watson@example.org>",
        "Call-ID: badvers.31417@c.example.com",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
        "",
    )


def test_lwsruri_keeps_the_text_for_the_log() -> None:
    error = rejected(load("lwsruri"))
    assert error.request is not None
    assert str(error.request.uri) == "sip:user@example.com; lr"
    assert error.request.cseq == (2130706432, "INVITE")


def test_lwsstart_and_trws_extra_spaces_are_tolerated() -> None:
    """§3.1.2.9/10: rejecting is acceptable; we are liberal and never forward the spaces."""
    for name in ("lwsstart", "trws"):
        m = request(name)
        assert m.serialize().split(b"\r\n", 1)[0] == f"{m.method} {m.uri} SIP/2.0".encode()
    assert str(request("lwsstart").uri) == "sip:user@example.com"
    assert str(request("trws").uri) == "sip:remote-target@example.com"


def test_escruri_headers_stay_in_the_uri() -> None:
    """§3.1.2.11: may be accepted, but the escaped headers must never become real ones."""
    m = request("escruri")
    assert m.uri.headers == {"Route": "%3Csip:example.com%3E"}
    assert "Route" not in m.headers and m.routes == []


def test_baddate_is_ignored_as_unused() -> None:
    m = request("baddate")
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct_contact_needs_angle_brackets() -> None:
    """§3.1.2.13: a URI with '?' in addr-spec form is refused; the registrar answers 400."""
    m = request("regbadct")
    with pytest.raises(SipParseError, match=r"^Bad Contact$"):
        m.contacts  # noqa: B018
    with pytest.raises(SipParseError, match=r"^Bad Contact$"):
        Address.parse(m.headers.get("Contact") or "", "Contact")


def test_badaspec_spaces_inside_angle_brackets_are_tolerated() -> None:
    m = request("badaspec")
    assert (m.to_addr.display_name, str(m.to_addr.uri)) == (
        "Watson, Thomas", "sip:t.watson@example.org",
    )  # fmt: skip


def test_baddn_unquoted_comma_display_name() -> None:
    """§3.1.2.15: liberal reading infers the quotes, and never propagates the error.

    The archived message ends without the empty line; a datagram delimits it anyway.
    """
    m = request("baddn")
    assert m.from_addr.display_name == "Bell, Alexander" and m.from_addr.tag == "43"
    assert str(m.from_addr) == '"Bell, Alexander" <sip:a.g.bell@example.com>;tag=43'
    assert m.cseq == (3923239, "OPTIONS") and m.body == b""


# -- RFC 4475 §3.2-3.4: transaction and application layer ---------------------------------


def test_badbranch_falls_back_to_rfc2543_matching() -> None:
    """§3.2.1: a bare "z9hG4bK" branch must not make unrelated requests one transaction."""
    data = load("badbranch")
    m = request("badbranch")
    assert m.top_via.branch == "z9hG4bK"
    layer = TransactionLayer()
    other = parse_message(data.replace(b"CSeq: 8 ", b"CSeq: 9 "))
    for message in (m, other, m):  # the third is a retransmission of the first
        layer.receive(message, ("192.0.2.1", 5060), "udp", 0.0)
    received = [e for e in layer.pop_events() if isinstance(e, RequestReceived)]
    assert [e.request.cseq[0] for e in received] == [8, 9]


@pytest.mark.parametrize(
    ("name", "scheme", "opaque"),
    [
        ("unkscm", "nobodyknowsthisscheme", "totallyopaquecontent"),  # §3.3.2: answer 416
        ("novelsc", "soap.beep", "//192.0.2.103:3002"),  # §3.3.3: 416 or 404
    ],
)
def test_unknown_request_uri_schemes_are_accepted_as_opaque(
    name: str, scheme: str, opaque: str
) -> None:
    m = request(name)
    assert (m.uri.scheme, m.uri.opaque) == (scheme, opaque)
    assert m.to_addr.uri.scheme == "sip"  # the To header is no routing information
    assert parse_message(m.serialize()) == m


def test_unksm2_unknown_schemes_in_headers() -> None:
    m = request("unksm2")
    assert (m.to_addr.uri.scheme, m.to_addr.uri.opaque) == ("isbn", "2983792873")
    assert (m.from_addr.uri.scheme, m.from_addr.tag) == ("http", "3234233")
    assert [(c.uri.scheme, c.uri.opaque) for c in m.contacts] == [("name", "John_Smith")]


def test_bext01_invut_sdp01_are_well_formed() -> None:
    """§3.3.5/6/15: the UAS answers 420/415/406; the parser only has to read them."""
    bext = request("bext01")
    assert bext.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert bext.headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis", "norDoAnyProxiesSupportThis",
    ]  # fmt: skip
    invut = request("invut")
    assert invut.content_type == "application/unknownformat" and len(invut.body) == 40
    assert request("sdp01").headers.get("Accept") == "text/nobodyKnowsThis"


def test_regaut01_unknown_authorization_scheme() -> None:
    m = request("regaut01")
    value = m.headers.get("Authorization")
    assert value == "NoOneKnowsThisScheme opaque-data=here"
    with pytest.raises(DigestError, match=r"^Unsupported authentication scheme"):
        parse_credentials(value)


def test_bcast_broadcast_via_is_just_a_host() -> None:
    m = parsed("bcast")
    assert isinstance(m, Response)
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf_max_forwards_zero() -> None:
    assert request("zeromf").max_forwards == 0


def test_cparam_contact_vs_uri_parameters() -> None:
    """§3.3.12/13: without <> the parameter belongs to the Contact, inside them to the URI."""
    (header_param,) = request("cparam01").contacts
    assert (header_param.params, header_param.uri.params) == ({"unknownparam": None}, {})
    (uri_param,) = request("cparam02").contacts
    assert (uri_param.params, uri_param.uri.params) == ({}, {"unknownparam": None})


def test_regescrt_escaped_header_in_contact_uri() -> None:
    (contact,) = request("regescrt").contacts
    assert contact.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}


def test_inv2543_rfc2543_syntax_is_accepted() -> None:
    m = request("inv2543")
    assert m.top_via.branch is None and m.from_addr.tag is None and m.max_forwards is None
    # addr-spec form: ";user=phone" is a To parameter under RFC 3261 §20.10.
    assert (m.to_addr.params, m.to_addr.uri.params) == ({"user": "phone"}, {})
    data = load("inv2543")
    assert m.body == data[data.index(b"\r\n\r\n") + 4 :]  # no Content-Length: the rest


# -- RFC 5118: IPv6 ------------------------------------------------------------------------


@pytest.mark.parametrize("name", RFC5118)
def test_rfc5118_wire_forms_parse_and_round_trip(name: str) -> None:
    data = wire5118(name)
    if name == "ipv6-bad":  # §4.2 "should respond with a 400 Bad Request error"
        error = rejected(data)
        assert (error.reason, error.status) == ("Bad Request-URI", 400)
        assert error.request is not None
        return
    message = parse_message(data)
    assert parse_message(message.serialize()) == message
    message.vias  # noqa: B018
    message.contacts  # noqa: B018


@pytest.mark.parametrize("name", RFC5118)
def test_rfc5118_archive_bytes_as_published(name: str) -> None:
    """Bare LF is accepted; only the RFC's own Content-Length slips make a difference."""
    data = load(name)
    if name in ("ipv6-in-sdp", "mult-ip-in-sdp", "ipv6-bad"):
        error = rejected(data)
        assert error.status == 400 and error.request is not None
        expected = "Bad Request-URI" if name == "ipv6-bad" else "Content-Length mismatch"
        assert error.reason == expected
    else:
        archived, wire = parse_message(data), parse_message(wire5118(name))
        assert archived.start_line() == wire.start_line()
        assert archived.headers == wire.headers
        assert archived.body.replace(b"\n", b"\r\n") == wire.body


def test_rfc5118_ipv6_references() -> None:
    good = parse_message(wire5118("ipv6-good"))
    assert isinstance(good, Request)
    assert (good.uri.host, good.uri.port) == ("2001:db8::10", None)
    assert (good.top_via.host, good.contacts[0].uri.host) == ("2001:db8::9:1", "2001:db8::1")
    assert str(good.uri) == "sip:[2001:db8::10]"
    ambiguous = parse_message(wire5118("port-ambiguous"))
    assert isinstance(ambiguous, Request)  # §4.3: well formed, the port is part of the address
    assert (ambiguous.uri.host, ambiguous.uri.port) == ("2001:db8::10:5070", None)
    clear = parse_message(wire5118("port-unambiguous"))
    assert isinstance(clear, Request)
    assert (clear.uri.host, clear.uri.port) == ("2001:db8::10", 5070)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("via-received-param-with-delim", "[2001:db8::9:255]"),
        ("via-received-param-no-delim", "2001:db8::9:255"),
    ],
)
def test_rfc5118_received_with_or_without_brackets(name: str, raw: str) -> None:
    """§4.5: accept both; relay the parameter as sent, route by the bare address."""
    via = parse_message(wire5118(name)).top_via
    assert (via.host, via.params["received"], via.received) == (
        "2001:db8::9:1",
        raw,
        raw.strip("[]"),
    )
    assert via_destination(via) == ("2001:db8::9:255", 5060)


def test_rfc5118_multiple_addresses_in_headers() -> None:
    m = parse_message(wire5118("mult-ip-in-header"))
    assert [(v.transport, v.host, v.port) for v in m.vias] == [
        ("UDP", "2001:db8::9:1", 6050),
        ("UDP", "192.0.2.1", None),
        ("TCP", "2001:db8::9:255", None),
    ]
    assert m.vias[2].received == "192.0.2.200"


def test_rfc5118_ipv4_mapped_addresses() -> None:
    m = parse_message(wire5118("ipv4-mapped-ipv6"))
    assert [(v.host, v.port) for v in m.vias] == [
        ("::ffff:192.0.2.10", 19823), ("::ffff:192.0.2.2", None),
    ]  # fmt: skip
    (contact,) = m.contacts
    assert (contact.display_name, contact.uri.host) == ("T. desk phone", "::ffff:192.0.2.2")
    sdp = SessionDescription.parse(m.body)
    assert (sdp.origin_address, sdp.connection) == ("::ffff:192.0.2.2", "::ffff:192.0.2.2")
    assert sdp.audio_endpoint() == ("::ffff:192.0.2.2", 6000)


def test_rfc5118_ipv6_in_sdp() -> None:
    sdp = SessionDescription.parse(parse_message(wire5118("ipv6-in-sdp")).body)
    assert (sdp.origin_address, sdp.connection) == ("2001:db8::20", "2001:db8::20")
    assert sdp.audio_endpoint() == ("2001:db8::20", 6000)
    assert [m.port for m in sdp.media] == [6000, 6024]


def test_rfc5118_per_media_addresses_in_sdp() -> None:
    sdp = SessionDescription.parse(parse_message(wire5118("mult-ip-in-sdp")).body)
    assert sdp.connection is None  # "s=" is empty, and each m= has its own c=
    assert [(m.media, m.connection) for m in sdp.media] == [
        ("audio", "192.0.2.1"), ("video", "2001:db8::1"),
    ]  # fmt: skip
    assert sdp.audio_endpoint() == ("192.0.2.1", 22334)


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("ipv6-bug-abnf-3-colons", "2001:db8:::192.0.2.1"),  # §4.10: must be tolerated
        ("ipv6-correct-abnf-2-colons", "2001:db8::192.0.2.1"),
    ],
)
def test_rfc5118_ipv6_abnf_bug(name: str, host: str) -> None:
    m = parse_message(load(name))  # archived without the empty line
    assert isinstance(m, Request)
    assert (m.uri.host, m.to_addr.uri.host) == (host, host)


def _views(message: Message) -> None:
    """Touch every typed view: none may raise anything but SipParseError."""
    for view in ("vias", "contacts", "routes", "record_routes", "max_forwards", "expires"):
        with contextlib.suppress(SipParseError):
            getattr(message, view)


@pytest.mark.parametrize("name", ALL)
def test_every_vector_is_handled_without_surprises(name: str) -> None:
    """Whatever the verdict, only SipParseError; truncations of the vector likewise."""
    data = load(name)
    for size in {len(data), len(data) // 2, 40, 1}:
        try:
            message = parse_message(data[:size])
        except SipParseError as error:
            if error.request is not None:
                make_response(error.request, error.status, error.reason).serialize()
            continue
        _views(message)
        assert parse_message(message.serialize()) == message
