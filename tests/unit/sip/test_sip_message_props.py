"""Property tests: generated messages round-trip; random and mutated input only ever raises
SipParseError (never IndexError, UnicodeError, ...), in parse_message and StreamFramer."""

from __future__ import annotations

import contextlib
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypbx.sip.framing import StreamFramer
from pypbx.sip.message import (
    Address,
    Headers,
    Message,
    Request,
    Response,
    SipParseError,
    SipURI,
    Via,
    parse_message,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=10)
lower_tokens = tokens.map(str.lower)
labels = st.builds(
    lambda a, b: a + b,
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6),
    st.text(string.ascii_lowercase + string.digits + "-", max_size=4),
)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.none() | st.integers(0, 65535)
escaped = st.integers(0, 255).map("%{:02X}".format)
users = st.lists(
    st.sampled_from(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;/") | escaped,
    min_size=1,
    max_size=10,
).map("".join)
passwords = st.text(string.ascii_letters + string.digits + "-_.!~*'()&=+$,", max_size=8)
uri_param_values = st.text(string.ascii_letters + string.digits + "-_.!~*'()[]/:&+$", min_size=1)
uri_params = st.dictionaries(lower_tokens, st.none() | uri_param_values, max_size=3)
uri_headers = st.dictionaries(
    st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=8),
    st.text(string.ascii_letters + string.digits + "-_.%", max_size=8),
    max_size=2,
)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipURI:
    user = draw(st.none() | users)
    return SipURI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=None if user is None else draw(st.none() | passwords),
        host=draw(hosts),
        port=draw(ports),
        params=draw(uri_params),
        headers=draw(uri_headers),
    )


quoted_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
header_param_values = st.none() | tokens | quoted_values
header_params = st.dictionaries(lower_tokens, header_param_values, max_size=3)
display_names = st.none() | st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20
)
addresses = st.builds(Address, sip_uris(), display_names, header_params)
vias = st.builds(
    Via,
    st.sampled_from(["UDP", "TCP", "TLS", "WS", "SCTP"]),
    hosts,
    ports,
    st.dictionaries(lower_tokens, st.none() | tokens, max_size=3),
)
words = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~()<>:\\\"/[]?{}", min_size=1)
call_ids = st.builds(lambda a, b: a if b is None else f"{a}@{b}", words, st.none() | words)
free_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30).map(str.strip)


@st.composite
def messages(draw: st.DrawFn) -> tuple[Message, list[Via], Address, Address, list[Address]]:
    method = draw(tokens)
    message: Message
    if draw(st.booleans()):
        message = Request(method, draw(sip_uris()))
    else:
        message = Response(draw(st.integers(100, 699)), draw(free_text))
    via_list = draw(st.lists(vias, min_size=1, max_size=4))
    split = draw(st.integers(1, len(via_list)))
    message.headers.add("Via", ", ".join(str(v) for v in via_list[:split]))
    if via_list[split:]:
        message.headers.add("v", ", ".join(str(v) for v in via_list[split:]))
    from_addr, to_addr = draw(addresses), draw(addresses)
    message.headers.add("f" if draw(st.booleans()) else "From", str(from_addr))
    message.headers.add("To", str(to_addr))
    message.headers.add("Call-ID", draw(call_ids))
    message.headers.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    if draw(st.booleans()):
        message.headers.add("Max-Forwards", draw(st.integers(0, 255)))
    contacts = draw(st.lists(addresses, max_size=3))
    if contacts:
        message.headers.add("Contact", ", ".join(str(c) for c in contacts))
    for name, value in draw(st.lists(st.tuples(tokens, free_text), max_size=4)):
        message.headers.add("X-" + name, value)
    message.body = draw(st.binary(max_size=200))
    return message, via_list, from_addr, to_addr, contacts


@SETTINGS
@given(messages())
def test_generated_messages_round_trip(
    generated: tuple[Message, list[Via], Address, Address, list[Address]],
) -> None:
    message, via_list, from_addr, to_addr, contacts = generated
    wire = message.serialize()
    parsed = parse_message(wire)
    assert parsed == message
    assert parsed.vias == via_list
    assert parsed.top_via == via_list[0]
    assert parsed.from_addr == from_addr
    assert parsed.to_addr == to_addr
    assert parsed.contacts == contacts
    assert parsed.serialize() == wire
    assert StreamFramer().feed(wire + wire) == [wire, wire]


@SETTINGS
@given(sip_uris())
def test_uris_round_trip(uri: SipURI) -> None:
    assert SipURI.parse(str(uri)) == uri


@SETTINGS
@given(st.lists(addresses, min_size=1, max_size=4))
def test_address_lists_round_trip(items: list[Address]) -> None:
    assert Address.parse_list(", ".join(str(a) for a in items)) == items


VALID = (
    b"\r\nINVITE sip:bob@biloxi.com;transport=tcp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP p;branch=b\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob \\"B\\"" <sip:bob@biloxi.com>\r\n'
    b"From: sip:alice@atlanta.com;tag=1928301774\r\n"
    b"i: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b'Contact: <sip:alice@pc33.atlanta.com>;q=0.5, "x, y" <sip:z@q>\r\n'
    b"Route: <sip:p1;lr>\r\n"
    b"Subject: folded\r\n  line\r\n"
    b"Expires: 60\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 10\r\n\r\n"
    b"v=0\r\ns=-\r\n"
)
SPECIAL = b'\r\n\t :;,<>"\\@[]?=/%\x00\xff'


def exercise(data: bytes) -> None:
    """Parse; on success every view must work or raise SipParseError, and re-parse equal."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert exc.reason
        if exc.request is not None:
            assert isinstance(exc.request, Request)
            exc.request.serialize()
        return
    for view in ("vias", "contacts", "routes", "record_routes", "max_forwards", "expires"):
        with contextlib.suppress(SipParseError):
            getattr(message, view)
    _ = (message.call_id, message.cseq, message.from_addr, message.to_addr, message.content_type)
    wire = message.serialize()
    assert parse_message(wire) == message
    assert Headers(message.headers.items()) == message.headers


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    exercise(data)
    with contextlib.suppress(SipParseError):
        StreamFramer().feed(data)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(VALID)),
            st.sampled_from(["replace", "insert", "delete", "truncate"]),
            st.sampled_from(list(SPECIAL)) | st.integers(0, 255),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_messages_only_raise_parse_errors(mutations: list[tuple[int, str, int]]) -> None:
    data = bytearray(VALID)
    for position, kind, byte in mutations:
        at = min(position, len(data))
        if kind == "replace" and at < len(data):
            data[at] = byte
        elif kind == "insert":
            data.insert(at, byte)
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "truncate":
            del data[at:]
    exercise(bytes(data))
    framer = StreamFramer()
    try:
        for frame in framer.feed(bytes(data)):
            exercise(frame)
    except SipParseError:
        pass


def test_the_mutation_base_is_valid() -> None:
    message = parse_message(VALID)
    assert isinstance(message, Request)
    assert len(message.contacts) == 2
    assert message.body == b"v=0\r\ns=-\r\n"
