"""StreamFramer: split and merged chunks, keep-alives, bounds, garbage."""

from __future__ import annotations

import pytest

from pypbx.sip.framing import StreamFramer
from pypbx.sip.message import Limits, SipParseError, parse_message


def frame(
    call_id: str, body: bytes = b"", length: int | None = None, eol: bytes = b"\r\n"
) -> bytes:
    lines = [
        b"MESSAGE sip:bob@b.example SIP/2.0",
        b"Via: SIP/2.0/TCP a.example;branch=z9hG4bK" + call_id.encode(),
        b"From: <sip:alice@a.example>;tag=1",
        b"To: <sip:bob@b.example>",
        b"Call-ID: " + call_id.encode(),
        b"CSeq: 1 MESSAGE",
        b"l: " + str(len(body) if length is None else length).encode(),
    ]
    return eol.join(lines) + eol + eol + body


ONE = frame("one", b"hello\r\n\r\nworld")  # a blank line inside the body must not confuse it
TWO = frame("two")
THREE = frame("three", b"x" * 300, eol=b"\n")


def test_whole_messages_and_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []  # RFC 5626 ping
    assert framer.feed(ONE + b"\r\n" + TWO + b"\r\n\r\n" + THREE) == [ONE, TWO, THREE]
    assert framer.buffered == 0
    assert parse_message(ONE).body == b"hello\r\n\r\nworld"


def test_every_split_point() -> None:
    stream = ONE + TWO + b"\r\n\r\n" + THREE
    for cut in range(len(stream) + 1):
        framer = StreamFramer()
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert out == [ONE, TWO, THREE], cut


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for byte in ONE + TWO:
        out.extend(framer.feed(bytes([byte])))
    assert out == [ONE, TWO]


def test_partial_message_is_kept() -> None:
    framer = StreamFramer()
    assert framer.feed(ONE + TWO[:20]) == [ONE]
    assert framer.buffered == 20
    assert framer.feed(TWO[20:]) == [TWO]


def test_response_frames() -> None:
    response = b"SIP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert StreamFramer().feed(response * 2) == [response, response]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (frame("x").replace(b"l: 0\r\n", b""), "Missing Content-Length"),
        (frame("x", length=0).replace(b"l: 0", b"l: abc"), "Bad Content-Length"),
        (frame("x", length=0).replace(b"l: 0", b"l: -1"), "Bad Content-Length"),
        (frame("x", length=10**9), "Body too large"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Bad start line"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n", "Bad start line"),
        (b"A" * 9000, "Start line too long"),
    ],
)
def test_errors(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(data)
    assert info.value.reason == reason
    assert info.value.request is None


def test_header_section_without_end_is_bounded() -> None:
    framer = StreamFramer(Limits(max_message=1000))
    framer.feed(b"MESSAGE sip:b@c SIP/2.0\r\n")
    with pytest.raises(SipParseError, match="Message too large"):
        for _ in range(100):
            framer.feed(b"X-Filler: aaaaaaaaaaaaaaaaaa\r\n")


def test_total_size_is_bounded() -> None:
    framer = StreamFramer(Limits(max_message=500, max_body=1000))
    with pytest.raises(SipParseError, match="Message too large"):
        framer.feed(frame("x", length=600))
