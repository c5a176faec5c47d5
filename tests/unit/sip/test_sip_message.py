"""parse_message / serialize / make_response vectors, valid and malformed (RFC 3261, 4475-style)."""

from __future__ import annotations

import pytest

from pypbx.sip.message import (
    Address,
    Headers,
    Limits,
    Request,
    Response,
    SipParseError,
    SipURI,
    Via,
    generate_branch,
    generate_call_id,
    generate_tag,
    make_response,
    parse_message,
    reason_phrase,
)


def msg(*lines: str, body: bytes = b"", eol: str = "\r\n") -> bytes:
    """Join header lines with ``eol`` and append the blank line and body."""
    return (eol.join(lines) + eol + eol).encode() + body


SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\ns=-\r\n"
    b"c=IN IP4 pc33.atlanta.com\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

INVITE_LINES = (
    "INVITE sip:bob@biloxi.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.com>",
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.com>",
    "Content-Type: application/sdp",
    f"Content-Length: {len(SDP)}",
)


def invite(*replace: tuple[str, str | None], body: bytes = SDP) -> bytes:
    """The RFC 3261 §4 INVITE with header lines replaced (by name prefix) or dropped (None)."""
    lines = list(INVITE_LINES)
    for prefix, new in replace:
        index = next(i for i, line in enumerate(lines) if line.startswith(prefix))
        if new is None:
            del lines[index]
        else:
            lines[index] = new
    return msg(*lines, body=body)


# -- valid messages -----------------------------------------------------------------------------


def test_invite_with_sdp() -> None:
    m = parse_message(invite())
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == SipURI.parse("sip:bob@biloxi.com")
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert m.cseq == (314159, "INVITE")
    assert m.from_addr.display_name == "Alice"
    assert m.from_addr.tag == "1928301774"
    assert m.to_addr.tag is None
    assert m.top_via.branch == "z9hG4bK776asdhds"
    assert m.top_via.host == "pc33.atlanta.com"
    assert [str(c.uri) for c in m.contacts] == ["sip:alice@pc33.atlanta.com"]
    assert m.max_forwards == 70
    assert m.content_type == "application/sdp"
    assert m.expires is None
    assert m.body == SDP
    assert m.serialize() == invite()


def test_register_with_expires_and_contact_params() -> None:
    data = msg(
        "REGISTER sip:registrar.biloxi.com SIP/2.0",
        "Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.com>",
        "From: Bob <sip:bob@biloxi.com>;tag=456248",
        "Call-ID: 843817637684230@998sdasdh09",
        "CSeq: 1826 REGISTER",
        'Contact: <sip:bob@192.0.2.4>;expires=3600;+sip.instance="<urn:uuid:1>", '
        "<sip:bob@[2001:db8::4]:5062;transport=tcp>;q=0.5",
        "Expires: 7200",
        "Content-Length: 0",
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.expires == 7200
    assert [str(c.uri) for c in m.contacts] == [
        "sip:bob@192.0.2.4",
        "sip:bob@[2001:db8::4]:5062;transport=tcp",
    ]
    assert m.contacts[0].params == {"expires": "3600", "+sip.instance": '"<urn:uuid:1>"'}
    assert m.contacts[1].uri.transport == "tcp"
    assert not m.has_wildcard_contact
    assert m.body == b""
    assert m.serialize() == data


def test_register_wildcard_contact() -> None:
    data = msg(
        "REGISTER sip:r.example.com SIP/2.0",
        "Via: SIP/2.0/TCP h.example.com;branch=z9hG4bK1",
        "To: <sip:u@example.com>",
        "From: <sip:u@example.com>;tag=1",
        "Call-ID: c1",
        "CSeq: 2 REGISTER",
        "Contact: *",
        "Expires: 0",
        "Content-Length: 0",
    )
    m = parse_message(data)
    assert m.has_wildcard_contact
    assert m.expires == 0
    with pytest.raises(SipParseError, match="Wildcard Contact"):
        _ = m.contacts


def test_response_with_multiple_vias_and_record_route() -> None:
    data = msg(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3, "
        "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2",
        "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=192.0.2.1",
        "Record-Route: <sip:server10.biloxi.com;lr>, <sip:bigbox3.site3.atlanta.com;lr>",
        "To: Bob <sip:bob@biloxi.com>;tag=a6c85cf",
        "From: Alice <sip:alice@atlanta.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.atlanta.com",
        "CSeq: 314159 INVITE",
        "Contact: <sip:bob@192.0.2.4>",
        "Content-Length: 0",
    )
    m = parse_message(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (200, "OK")
    assert [v.host for v in m.vias] == [
        "server10.biloxi.com",
        "bigbox3.site3.atlanta.com",
        "pc33.atlanta.com",
    ]
    assert m.vias[2].received == "192.0.2.1"
    assert m.top_via.received == "192.0.2.3"
    assert [str(r.uri) for r in m.record_routes] == [
        "sip:server10.biloxi.com;lr",
        "sip:bigbox3.site3.atlanta.com;lr",
    ]
    assert m.routes == []
    assert m.to_addr.tag == "a6c85cf"
    assert m.max_forwards is None


def test_compact_form_and_odd_spacing() -> None:
    data = msg(
        "OPTIONS sip:user@example.com SIP/2.0",
        "v:SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKcompact",
        "t :   <sip:user@example.com>",
        "f:\t<sip:caller@example.net>;tag=abc",
        "i: compact-call-id",
        "CSEQ: 8 OPTIONS",
        "k: 100rel, timer",
        "l: 0",
    )
    m = parse_message(data)
    assert m.headers.items()[:5] == [
        ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKcompact"),
        ("To", "<sip:user@example.com>"),
        ("From", "<sip:caller@example.net>;tag=abc"),
        ("Call-ID", "compact-call-id"),
        ("CSeq", "8 OPTIONS"),
    ]
    assert m.headers.get_all("Supported") == ["100rel", "timer"]
    assert b"Call-ID: compact-call-id\r\n" in m.serialize()
    assert b"Content-Length: 0\r\n\r\n" in m.serialize()


def test_folded_headers_are_unfolded() -> None:
    data = msg(
        "INVITE sip:bob@biloxi.com SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.com",
        "  ;branch=z9hG4bKfold,",
        "\tSIP/2.0/UDP second.example.com;branch=z9hG4bK2",
        "To: Bob",
        " <sip:bob@biloxi.com>",
        "From: <sip:alice@atlanta.com>;tag=1",
        "Call-ID: fold1",
        "CSeq: 1",
        "    INVITE",
        "Subject: I know you're there,",
        "         pick up the phone",
        "         and talk to me!",
        "Content-Length: 0",
    )
    m = parse_message(data)
    assert m.headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert [v.branch for v in m.vias] == ["z9hG4bKfold", "z9hG4bK2"]
    assert m.to_addr.display_name == "Bob"
    assert m.cseq == (1, "INVITE")


def test_display_names_with_escapes_commas_and_utf8() -> None:
    data = msg(
        "MESSAGE sip:bob@biloxi.com SIP/2.0",
        "Via: SIP/2.0/TCP client.atlanta.com;branch=z9hG4bKesc",
        'To: "Bob \\"the builder\\", Jr. \\\\o/" <sip:bob@biloxi.com>',
        'From: "Ål \u00e9\u4e2d" <sip:alice@atlanta.com>;tag=x',
        "Call-ID: esc",
        "CSeq: 5 MESSAGE",
        "Content-Type: text/plain;charset=UTF-8",
        "Content-Length: 5",
        body=b"hello",
    )
    m = parse_message(data)
    assert m.to_addr.display_name == 'Bob "the builder", Jr. \\o/'
    assert m.from_addr.display_name == "Ål \u00e9\u4e2d"
    assert m.content_type == "text/plain"
    assert m.body == b"hello"


def test_latin1_display_name_is_tolerated() -> None:
    data = invite(("From:", 'From: "M\xfcller" <sip:m@atlanta.com>;tag=9'))
    data = data.replace("Müller".encode(), "Müller".encode("latin-1"))
    m = parse_message(data)
    assert m.from_addr.display_name == "Müller"


def test_ipv6_everywhere() -> None:
    data = msg(
        "INVITE sip:[2001:db8::10]:5060 SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKv6;received=[2001:db8::9];rport=5070",
        "To: <sip:[2001:db8::10]>",
        "From: <sip:alice@[2001:db8::9]:5070>;tag=v6",
        "Call-ID: v6@[2001:db8::9]",
        "CSeq: 1 INVITE",
        "Contact: <sip:alice@[2001:db8::9]:5070>",
        "Content-Length: 0",
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert (m.uri.host, m.uri.port) == ("2001:db8::10", 5060)
    assert (m.top_via.host, m.top_via.port, m.top_via.rport) == ("2001:db8::9", 5070, 5070)
    assert m.top_via.received == "2001:db8::9"  # brackets dropped (RFC 5118 §4.5)
    assert m.top_via.params["received"] == "[2001:db8::9]"
    assert m.contacts[0].uri.host == "2001:db8::9"
    assert m.serialize() == data


def test_bare_lf_and_leading_crlf() -> None:
    data = b"\r\n\r\n\n" + invite()
    m = parse_message(data)
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.com"
    bare = msg(*INVITE_LINES, body=SDP, eol="\n")
    m2 = parse_message(bare)
    assert m2.body == SDP
    assert m2.serialize() == invite()


def test_content_length_shorter_than_body_truncates() -> None:
    m = parse_message(invite(("Content-Length:", "Content-Length: 4")))
    assert m.body == b"v=0\r"
    leading_zeros = parse_message(invite(("Content-Length:", "Content-Length: 0004")))
    assert leading_zeros.body == b"v=0\r"


def test_missing_content_length_on_datagram_means_rest() -> None:
    m = parse_message(invite(("Content-Length:", None)))
    assert m.body == SDP
    assert m.serialize() == invite()


def test_missing_final_blank_line_is_tolerated() -> None:
    data = invite(("Content-Length:", None), body=b"").rstrip(b"\r\n")
    m = parse_message(data)
    assert m.body == b""
    assert m.headers.get("Content-Type") == "application/sdp"


def test_methods_are_case_sensitive_and_extensible() -> None:
    m = parse_message(
        invite(
            ("INVITE ", "invite sip:bob@biloxi.com SIP/2.0"),
            ("CSeq:", "CSeq: 314159 invite"),
        )
    )
    assert isinstance(m, Request)
    assert m.method == "invite"
    ext = parse_message(
        invite(("INVITE ", "NEWMETHOD sip:bob@biloxi.com SIP/2.0"), ("CSeq:", "CSeq: 1 NEWMETHOD"))
    )
    assert isinstance(ext, Request) and ext.method == "NEWMETHOD"


def test_version_and_header_names_are_case_insensitive() -> None:
    m = parse_message(
        invite(("INVITE ", "INVITE sip:bob@biloxi.com sip/2.0"), ("Call-ID:", "cAlL-iD: x"))
    )
    assert m.call_id == "x"
    assert m.serialize().startswith(b"INVITE sip:bob@biloxi.com SIP/2.0\r\n")


def test_tel_request_uri_is_opaque() -> None:
    m = parse_message(invite(("INVITE ", "INVITE tel:+12015550123 SIP/2.0")))
    assert isinstance(m, Request)
    assert m.uri.scheme == "tel"
    assert m.uri.opaque == "+12015550123"


def test_response_reason_phrases() -> None:
    base = [line for line in INVITE_LINES[1:] if not line.startswith(("Max", "Content"))]
    empty = parse_message(msg("SIP/2.0 180", *base))
    assert isinstance(empty, Response) and (empty.status, empty.reason) == (180, "")
    utf8 = parse_message(msg("SIP/2.0 486 Busy  here \u2013 ocupado", *base))
    assert isinstance(utf8, Response) and utf8.reason == "Busy  here \u2013 ocupado"
    assert utf8.body == b""


def test_torture_unknown_headers_and_odd_values() -> None:
    data = msg(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "TO :",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        "Content-Length   : 0",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;rport;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "Route:",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
        "  branch  =   z9hG4bK9ikj8  ,",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
        " z9hG4bK30239",
        'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
        "      newvalue ;",
        "  secondparam ; q = 0.33",
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.to_addr.tag == "1918181833n"
    assert m.from_addr.display_name == 'J Rosenberg \\"'
    assert m.from_addr.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.routes[0].uri.params["unknown-no-value"] is None
    contact = m.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    again = parse_message(m.serialize())
    assert again == m


def test_escaped_uri_and_semicolons_in_user() -> None:
    data = invite(
        ("INVITE ", "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0"),
        ("To:", "To: <sip:+1-212-555-1212;npdi;rn=+1212@gw.example.com;user=phone>"),
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.uri.user == "sips%3Auser%40example.com"
    assert m.to_addr.uri.user == "+1-212-555-1212;npdi;rn=+1212"
    assert m.to_addr.uri.params == {"user": "phone"}


# -- malformed messages ------------------------------------------------------------------------


def parse_error(data: bytes, limits: Limits | None = None) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        if limits is None:
            parse_message(data)
        else:
            parse_message(data, limits)
    return info.value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (invite(("Via:", None)), "Missing Via"),
        (invite(("Via:", "Via: SIP/2.0/UDP")), "Bad Via"),
        (invite(("Via:", "Via: SIP/2.0/UDP host:70000;branch=z9hG4bK1")), "Bad Via"),
        (b"", "Empty message"),
        (b"\r\n\r\n", "Empty message"),
        (b"INVITE sip:bob@biloxi.com", "Bad request line"),
        (b"INVITE sip:bob@biloxi.com SIP/2.0 extra\r\n\r\n", "Bad request line"),
        (b"INV@TE sip:bob@biloxi.com SIP/2.0\r\n\r\n", "Bad request line"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "Control character in header section"),
        (b"\xff\xfe\xfd garbage here", "Bad request line"),
        (
            invite(("Max-Forwards:", "Max-Forwards: 70\rX: y")),
            "Control character in header section",
        ),
        (invite(("Max-Forwards:", "No colon here")), "Malformed header line"),
        (invite(("Max-Forwards:", ": empty name")), "Malformed header line"),
        (invite(("Max-Forwards:", "Bad Name: x")), "Malformed header line"),
        (b"INVITE sip:b@c SIP/2.0\r\n folded-first: x\r\n\r\n", "Malformed header line"),
    ],
)
def test_dropped_requests(data: bytes, reason: str) -> None:
    error = parse_error(data)
    assert error.reason == reason
    assert str(error) == reason
    assert error.request is None
    assert error.status == 400


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (invite(("Call-ID:", None)), "Missing Call-ID"),
        (invite(("From:", None)), "Missing From"),
        (invite(("To:", None)), "Missing To"),
        (invite(("CSeq:", None)), "Missing CSeq"),
        (invite(("From:", "From: <sip:alice@atlanta.com")), "Bad From"),
        (invite(("To:", "To: Bob sip:bob@biloxi.com")), "Bad To"),
        (invite(("To:", "To: <sip:a@b>, <sip:c@d>")), "Bad To"),
        (invite(("CSeq:", "CSeq: abc INVITE")), "Bad CSeq"),
        (invite(("CSeq:", "CSeq: 1")), "Bad CSeq"),
        (invite(("CSeq:", "CSeq: -1 INVITE")), "Bad CSeq"),
        (invite(("CSeq:", "CSeq: 2147483648 INVITE")), "Bad CSeq"),
        (invite(("CSeq:", "CSeq: 1 INVITE extra")), "Bad CSeq"),
        (invite(("Call-ID:", "Call-ID:")), "Bad Call-ID"),
        (invite(("Call-ID:", "Call-ID: two words")), "Bad Call-ID"),
        (invite(("To:", "To: <sip:b@c>\r\nt: <sip:b@c>")), "Duplicate To"),
        (invite(("Call-ID:", "Call-ID: a\r\ni: b")), "Duplicate Call-ID"),
    ],
)
def test_requests_with_bad_core_headers_are_answered(data: bytes, reason: str) -> None:
    """RFC 4475 (insuf, multi01, quotbal, scalar02): 400, since the top Via is matchable."""
    error = parse_error(data)
    assert (error.reason, error.status) == (reason, 400)
    assert isinstance(error.request, Request)
    response = make_response(error.request, 400, error.reason, to_tag="t1")
    assert response.top_via.branch == "z9hG4bK776asdhds"
    assert response.serialize().startswith(f"SIP/2.0 400 {reason}\r\n".encode())


@pytest.mark.parametrize(
    ("data", "reason", "status"),
    [
        (invite(("CSeq:", "CSeq: 314159 ACK")), "CSeq method mismatch", 400),
        (invite(("CSeq:", "CSeq: 314159 invite")), "CSeq method mismatch", 400),
        (invite(("Content-Length:", "Content-Length: abc")), "Bad Content-Length", 400),
        (invite(("Content-Length:", "Content-Length: -5")), "Bad Content-Length", 400),
        (invite(("Content-Length:", "Content-Length: 1e3")), "Bad Content-Length", 400),
        (invite(("Content-Length:", "Content-Length: 9999")), "Content-Length mismatch", 400),
        (invite(("Content-Length:", "Content-Length: 0\r\nl: 5")), "Bad Content-Length", 400),
        (invite(("Content-Length:", "Content-Length: 99999999")), "Body too large", 513),
        (invite(("Max-Forwards:", "Max-Forwards: seventy")), "Bad Max-Forwards", 400),
        (invite(("INVITE ", "INVITE sip:bob@biloxi.com SIP/7.0")), "Unsupported SIP version", 505),
        (invite(("INVITE ", "INVITE sip:bob@bil$oxi.com SIP/2.0")), "Bad Request-URI", 400),
        (invite(("INVITE ", "INVITE bob SIP/2.0")), "Bad Request-URI", 400),
    ],
)
def test_answerable_requests(data: bytes, reason: str, status: int) -> None:
    error = parse_error(data)
    assert (error.reason, error.status) == (reason, status)
    request = error.request
    assert isinstance(request, Request)
    response = make_response(request, error.status, error.reason, to_tag="t1")
    assert response.status == status
    assert response.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert response.top_via.branch == "z9hG4bK776asdhds"
    assert response.to_addr.tag == "t1"
    assert parse_message(response.serialize()) == response


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"SIP/2.0 2000 OK\r\n\r\n", "Bad status line"),
        (b"SIP/2.0 099 Low\r\n\r\n", "Bad status line"),
        (b"SIP/2.0 OK\r\n\r\n", "Bad status line"),
        (b"SIP/3.0 200 OK\r\n\r\n", "Unsupported SIP version"),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", "Missing From"),
        (
            msg(
                "SIP/2.0 200 OK",
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
                "From: <sip:a@b>;tag=1",
                "To: <sip:c@d>",
                "Call-ID: x",
                "CSeq: 1 INVITE",
                "Content-Length: 10",
            ),
            "Content-Length mismatch",
        ),
    ],
)
def test_dropped_responses(data: bytes, reason: str) -> None:
    error = parse_error(data)
    assert error.reason == reason
    assert error.request is None


def test_size_limits() -> None:
    limits = Limits(max_message=2000, max_line=100, max_headers=12, max_body=100)
    assert parse_error(invite() + b"x" * 2000, limits).reason == "Message too large"
    long_header = invite(("Max-Forwards:", "X-Long: " + "a" * 100))
    assert parse_error(long_header, limits).reason == "Header line too long"
    long_start = invite(("INVITE ", "INVITE sip:" + "b" * 100 + "@biloxi.com SIP/2.0"))
    assert parse_error(long_start, limits).reason == "Start line too long"
    many = invite(("Max-Forwards:", "\r\n".join(f"X-{i}: {i}" for i in range(5))))
    assert parse_error(many, limits).reason == "Too many headers"
    big_body = invite(("Content-Length:", "Content-Length: 101"), body=b"x" * 101)
    error = parse_error(big_body, limits)
    assert (error.reason, error.status) == ("Body too large", 513)
    no_length = invite(("Content-Length:", None), body=b"x" * 101)
    assert parse_error(no_length, limits).reason == "Body too large"
    assert parse_message(invite(), Limits()).body == SDP


def test_default_limits_bound_header_count() -> None:
    many = invite(("Max-Forwards:", "\r\n".join(f"X-{i}: {i}" for i in range(130))))
    assert parse_error(many).reason == "Too many headers"


# -- make_response ----------------------------------------------------------------------------


def test_make_response_copies_the_right_headers() -> None:
    data = invite(
        ("Via:", "Via: SIP/2.0/UDP p1;branch=z9hG4bKa, SIP/2.0/UDP p2;branch=z9hG4bKb"),
        ("Max-Forwards:", "Max-Forwards: 70\r\nRecord-Route: <sip:p1;lr>\r\nVia: SIP/2.0/UDP p3"),
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    response = make_response(request, 180, to_tag="tt")
    assert response.reason == "Ringing"
    assert response.headers.items() == [
        ("Via", "SIP/2.0/UDP p1;branch=z9hG4bKa, SIP/2.0/UDP p2;branch=z9hG4bKb"),
        ("Via", "SIP/2.0/UDP p3"),
        ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
        ("To", "Bob <sip:bob@biloxi.com>;tag=tt"),
        ("Call-ID", "a84b4c76e66710@pc33.atlanta.com"),
        ("CSeq", "314159 INVITE"),
    ]
    assert response.body == b""
    assert response.serialize().endswith(b"CSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert make_response(request, 486, "Not now").reason == "Not now"
    assert make_response(request, 200).to_addr.tag is None


def test_make_response_keeps_an_existing_to_tag_and_echoes_timestamp() -> None:
    request = parse_message(
        invite(
            ("To:", "To: sip:bob@biloxi.com;tag=have"),
            ("Max-Forwards:", "Timestamp: 54.2"),
        )
    )
    assert isinstance(request, Request)
    ok = make_response(request, 200, to_tag="new")
    assert ok.to_addr.tag == "have"
    assert ok.headers.get("To") == "sip:bob@biloxi.com;tag=have"
    assert "Timestamp" not in ok.headers
    trying = make_response(request, 100)
    assert trying.headers.get("Timestamp") == "54.2"


def test_make_response_appends_tag_to_addr_spec_correctly() -> None:
    request = parse_message(invite(("To:", "To: sip:bob@biloxi.com")))
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="x1")
    assert response.to_addr.tag == "x1"
    assert response.to_addr.uri.params == {}


# -- building and mutating -------------------------------------------------------------------


def build_request() -> Request:
    request = Request("BYE", SipURI(user="bob", host="192.0.2.4"))
    request.headers.add("Via", str(Via.new("udp", "10.0.0.1", 5060)))
    request.headers.add("From", str(Address(SipURI(user="alice", host="a.example"), "Alice")))
    request.headers.add("To", "<sip:bob@b.example>;tag=b1")
    request.call_id = generate_call_id("10.0.0.1")
    request.cseq = (2, "BYE")
    request.max_forwards = 70
    return request


def test_build_serialize_parse() -> None:
    request = build_request()
    request.headers.add("Content-Length", "999")  # ignored: serialize writes the real one
    request.body = b"abc"
    request.headers.add("Content-Type", "text/plain")
    wire = request.serialize()
    assert wire.count(b"Content-Length") == 1
    assert b"\r\nContent-Length: 3\r\n\r\nabc" in wire
    parsed = parse_message(wire)
    assert isinstance(parsed, Request)
    assert parsed.method == "BYE"
    assert parsed.from_addr == request.from_addr
    assert parsed.body == b"abc"


def test_views_follow_header_changes() -> None:
    request = build_request()
    assert request.to_addr.tag == "b1"
    request.headers.set("To", "<sip:bob@b.example>;tag=b2")
    assert request.to_addr.tag == "b2"
    request.to_addr = request.to_addr.with_tag("b3")
    assert request.headers.get("To") == "<sip:bob@b.example>;tag=b3"
    assert request.cseq == (2, "BYE")
    request.cseq = (3, "BYE")
    assert request.headers.get("CSeq") == "3 BYE"


def test_top_via_setter_handles_combined_lines() -> None:
    m = parse_message(
        invite(("Via:", "Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"))
    )
    top = m.top_via
    params = dict(top.params)
    params["received"] = "192.0.2.9"
    m.top_via = top.copy(params=params)
    assert m.headers.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.9",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
    ]
    assert m.top_via.received == "192.0.2.9"
    vias = m.vias
    vias.pop(0)  # the returned list is the caller's own
    assert len(m.vias) == 2
    m.vias = vias
    assert m.top_via.host == "b"


def test_contacts_setter_and_optional_views() -> None:
    request = build_request()
    assert request.contacts == []
    request.contacts = [Address.parse("<sip:alice@10.0.0.1:5060>;expires=60")]
    assert request.headers.get("Contact") == "<sip:alice@10.0.0.1:5060>;expires=60"
    request.headers.set("Expires", "99999999999")
    assert request.expires == 2**32 - 1
    request.headers.set("Expires", "Thu, 01 Dec 1994 16:00:00 GMT")
    assert request.expires is None
    request.max_forwards = None
    assert request.max_forwards is None
    assert request.content_type is None


def test_missing_headers_on_built_messages_raise_parse_errors() -> None:
    request = Request("OPTIONS", SipURI(host="example.com"))
    for prop in ("call_id", "cseq", "from_addr", "to_addr", "top_via"):
        with pytest.raises(SipParseError):
            getattr(request, prop)
    assert request.vias == []


def test_copy_is_independent() -> None:
    request = build_request()
    clone = request.copy()
    assert clone == request
    clone.headers.set("Max-Forwards", "69")
    clone.uri.params["lr"] = None
    assert request.max_forwards == 70
    assert str(request.uri) == "sip:bob@192.0.2.4"
    response = make_response(request, 200, to_tag="z")
    response_clone = response.copy()
    assert response_clone == response and response_clone is not response


def test_response_constructor_defaults() -> None:
    response = Response(404)
    assert response.reason == "Not Found"
    assert response.headers == Headers()
    assert response.serialize() == b"SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    assert "404" in repr(response)


def test_reason_phrases() -> None:
    assert reason_phrase(100) == "Trying"
    assert reason_phrase(481) == "Call/Transaction Does Not Exist"
    assert reason_phrase(513) == "Message Too Large"
    assert reason_phrase(499) == "Client Error"
    assert reason_phrase(699) == "Global Failure"


def test_generated_identifiers() -> None:
    tags = {generate_tag() for _ in range(50)}
    assert len(tags) == 50
    assert all(len(tag) >= 8 for tag in tags)
    assert generate_branch().startswith("z9hG4bK")
    call_id = generate_call_id("pbx.example.com")
    assert call_id.endswith("@pbx.example.com")
    assert generate_call_id("h") != generate_call_id("h")
