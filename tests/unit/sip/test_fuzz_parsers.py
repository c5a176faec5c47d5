"""Property-based fuzzing of every parser that reads network input.

SIP messages (and the stream framer), SDP, RTP packets, RFC 4733 telephone-events (and the
receiver fed with them), Digest headers (and the verifier fed with them).  Random bytes and
mutations of valid inputs (the RFC 4475/5118 torture corpus and typical messages: byte
flips, truncation, header duplication, huge values) may only ever give a result or the
parser's documented error, never another exception; where a serialiser exists, its output
parses back to the same value.  Every call also has a generous time bound, so an input that
makes a parser super-linear fails here instead of stalling a server.  ``bench/fuzz.py`` runs
the same kind of checks for minutes.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypbx.media.dtmf import (
    DIGITS,
    DtmfError,
    DtmfEventReceiver,
    TelephoneEvent,
    decode_event,
    encode_event,
)
from pypbx.media.rtp import RtpError, RtpPacket, is_rtcp
from pypbx.sip._lex import split_outside
from pypbx.sip.digest import (
    Challenge,
    DigestError,
    DigestVerifier,
    NonceManager,
    build_authorization,
    compute_ha1,
    parse_challenge,
    parse_credentials,
    select_challenge,
)
from pypbx.sip.framing import StreamFramer
from pypbx.sip.message import SipParseError, Via, make_response, parse_message
from pypbx.sip.sdp import SdpError, SessionDescription

FUZZ = settings(
    max_examples=250,
    deadline=None,  # the box is shared: the explicit bound below catches real hangs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HANG_SECONDS = 2.0  # one parse of at most 64 KiB takes milliseconds; seconds mean a hang

TORTURE = Path(__file__).parent / "torture"
SIP_SEEDS = [path.read_bytes() for path in sorted(TORTURE.glob("*.dat"))]
SDP_SEEDS = [
    body
    for message in SIP_SEEDS
    for body in [message.replace(b"\r\n", b"\n").partition(b"\n\n")[2]]
    if body.startswith(b"v=0")
] + [
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendonly\r\n"
]
RTP_SEEDS = [
    bytes.fromhex("80 00 00 01 00 00 00 a0 de ad be ef") + b"\xff" * 160,
    bytes.fromhex("92 e5 12 34 00 01 00 00 00 00 00 01 00 00 00 02 00 00 00 03"),
    bytes.fromhex("b0 08 ff ff ff ff ff ff 01 02 03 04 be de 00 01 11 22 33 44") + b"ab\x00\x03",
]
DIGEST_SEEDS = [
    b'Digest realm="pbx.example", nonce="abc", opaque="x", algorithm=SHA-256, qop="auth"',
    b'Digest realm="r", nonce="n", qop="auth,auth-int", algorithm=MD5-sess, stale=true',
    b'Digest username="alice", realm="pbx.example", nonce="n", uri="sip:a@b", '
    b'response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="c", qop=auth, '
    b'nc=00000001, opaque="o"',
    b'Digest username*=UTF-8\'\'%C3%A4lice, realm="r", nonce="n", uri="x", response="r"',
    b'Digest realm="a\\"b\\\\c", nonce="\\\\"',
    b"NoOneKnowsThisScheme opaque-data=here",
]
SPECIAL = b'\r\n\t :;,<>"\\@[]?=/%\x00\x7f\xff'
HUGE_UNITS = [b"a", b"9", b" ", b",", b";", b'"', b"\\", b"\r\n ", b"<", b"%", b"<a>,", b";a"]


@contextlib.contextmanager
def bounded(what: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < HANG_SECONDS, f"{what} took {elapsed:.2f} s"


Mutation = tuple[int, int, int, int]  # kind, position, byte, size


def apply(data: bytes, mutations: list[Mutation], pool: list[bytes], limit: int) -> bytes:
    """Deterministic edits; positions wrap around the current length."""
    out = bytearray(data)
    for kind, position, byte, size in mutations:
        at = position % (len(out) + 1)
        if kind == 0 and out:  # flip a bit
            out[at % len(out)] ^= 1 << (byte % 8)
        elif kind == 1 and out:  # interesting byte
            out[at % len(out)] = SPECIAL[byte % len(SPECIAL)]
        elif kind == 2:  # insert a byte
            out[at:at] = bytes([byte])
        elif kind == 3:  # delete a run
            del out[at : at + size % 32 + 1]
        elif kind == 4:  # truncate
            del out[at:]
        elif kind == 5:  # duplicate a line (a header, an SDP line)
            lines = bytes(out).split(b"\n")
            lines.insert(position % len(lines), lines[byte % len(lines)])
            out = bytearray(b"\n".join(lines))
        elif kind == 6:  # huge value
            unit = HUGE_UNITS[byte % len(HUGE_UNITS)]
            out[at:at] = unit * (size // len(unit))
        elif kind == 7:  # splice from another seed
            other = pool[byte % len(pool)]
            start = position % (len(other) + 1)
            out[at:at] = other[start : start + size % 256]
        del out[limit:]
    return bytes(out)


def mutated(seeds: list[bytes], limit: int) -> st.SearchStrategy[bytes]:
    sizes = st.sampled_from([1, 7, 64, 1000, 9000, limit])
    mutation = st.tuples(st.integers(0, 7), st.integers(0, 2**20), st.integers(0, 255), sizes)
    return st.builds(
        lambda seed, edits: apply(seed, edits, seeds, limit),
        st.sampled_from(seeds),
        st.lists(mutation, min_size=1, max_size=5),
    )


# -- SIP -------------------------------------------------------------------------------------

VIEWS = ("vias", "contacts", "routes", "record_routes", "max_forwards", "expires")


def check_sip(data: bytes) -> None:
    """Result or SipParseError; an answerable error builds its response; round trip holds."""
    with bounded("parse_message"):
        try:
            message = parse_message(data)
        except SipParseError as exc:
            assert exc.reason
            assert exc.status in (400, 505, 513)
            if exc.request is not None:
                make_response(exc.request, exc.status, exc.reason).serialize()
            return
        for view in VIEWS:
            with contextlib.suppress(SipParseError):
                getattr(message, view)
        _ = (message.call_id, message.cseq, message.from_addr, message.to_addr)
        wire = message.serialize()
        again = parse_message(wire)
    assert again == message
    assert again.serialize() == wire


@FUZZ
@given(st.binary(max_size=2000))
def test_sip_random_bytes(data: bytes) -> None:
    check_sip(data)


@FUZZ
@given(mutated(SIP_SEEDS, 65_600))
def test_sip_mutated_torture_corpus(data: bytes) -> None:
    check_sip(data)


via_text = st.builds(
    lambda protocol, host, port, params: f"{protocol} {host}{port}{params}",
    st.sampled_from(["SIP/2.0/UDP", "SIP/2.0/TCP", "SIP / 2.0 / tls", "SIP/2.0/", "SIP/3.0/UDP"]),
    st.text("ab1.-_:[]", min_size=0, max_size=12),
    st.sampled_from(["", ":5060", ":65535", ":65536", ":99999", ":", " : 5"]),
    st.text(";=ab1 ,\"'`~%<>", max_size=20),
)


@FUZZ
@given(via_text)
def test_sip_every_via_is_checked_like_the_full_parser(second: str) -> None:
    """The fast path for lower Vias never accepts what Via.parse refuses, nor the reverse."""
    data = (
        "OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n"
        f"Via: {second}\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
        "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    try:
        expected = [Via.parse(value) for value in split_outside(second, ",")]
    except SipParseError:
        expected = None
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert expected is None, exc
        assert (exc.reason, exc.status) == ("Bad Via", 400) and exc.request is not None
        return
    assert message.vias[1:] == expected


def frames_of(data: bytes, cuts: list[int]) -> tuple[list[bytes], bool]:
    framer = StreamFramer()
    frames: list[bytes] = []
    bounds = [0, *sorted({cut % (len(data) + 1) for cut in cuts}), len(data)]
    try:
        for start, end in itertools.pairwise(bounds):
            frames.extend(framer.feed(data[start:end]))
    except SipParseError:
        return frames, True
    return frames, False


@FUZZ
@given(
    st.lists(mutated(SIP_SEEDS, 20_000), min_size=1, max_size=3).map(b"\r\n".join),
    st.lists(st.integers(0, 2**20), max_size=8),
)
def test_sip_stream_framing_does_not_depend_on_segmentation(data: bytes, cuts: list[int]) -> None:
    with bounded("StreamFramer"):
        whole, whole_failed = frames_of(data, [])
        pieces, pieces_failed = frames_of(data, cuts)
    assert whole_failed == pieces_failed
    if not whole_failed:
        assert pieces == whole
    for frame in pieces:
        check_sip(frame)


# -- SDP -------------------------------------------------------------------------------------


def check_sdp(data: bytes) -> None:
    with bounded("SessionDescription.parse"):
        try:
            sdp = SessionDescription.parse(data)
        except SdpError:
            return
        sdp.audio_endpoint()
        for media in sdp.media:
            sdp.effective_direction(media)
        try:
            wire = sdp.serialize()
        except SdpError:
            return
        again = SessionDescription.parse(wire)
    assert again == sdp
    assert again.serialize() == wire


@FUZZ
@given(st.binary(max_size=1000), st.booleans())
def test_sdp_random_bytes(data: bytes, with_header: bool) -> None:
    check_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n" + data if with_header else data)


@FUZZ
@given(mutated(SDP_SEEDS, 66_000))
def test_sdp_mutated_bodies(data: bytes) -> None:
    check_sdp(data)


# -- RTP -------------------------------------------------------------------------------------


def check_rtp(data: bytes) -> None:
    is_rtcp(data)
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    wire = packet.serialize()
    assert RtpPacket.parse(wire) == packet
    assert len(wire) <= len(data)  # only padding is dropped


@FUZZ
@given(st.binary(max_size=1500))
def test_rtp_random_bytes(data: bytes) -> None:
    check_rtp(data)


@FUZZ
@given(mutated(RTP_SEEDS, 1500))
def test_rtp_mutated_packets(data: bytes) -> None:
    check_rtp(data)


# -- RFC 4733 events -------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=16))
def test_dtmf_event_decoding(data: bytes) -> None:
    try:
        event = decode_event(data)
    except DtmfError as exc:
        assert len(data) < 4, exc
        return
    assert isinstance(event, TelephoneEvent)
    # Round trip: everything but the reserved bit, which is sent as 0.
    wire = encode_event(event.event, event.end, event.volume, event.duration)
    assert wire == bytes([data[0], data[1] & 0xBF]) + data[2:4]


packets = st.tuples(
    st.integers(0, 2**32 - 1) | st.sampled_from([0, 160, 65535, 65536, 2**32 - 160]),
    st.binary(max_size=12) | st.builds(encode_event, st.integers(0, 20), st.booleans(),
                                       st.integers(0, 63), st.integers(0, 65535)),
    st.booleans(),
)  # fmt: skip


@FUZZ
@given(st.lists(packets, max_size=40))
def test_dtmf_receiver_survives_any_packet_sequence(
    sequence: list[tuple[int, bytes, bool]],
) -> None:
    receiver = DtmfEventReceiver()
    reported = 0
    for index, (timestamp, payload, marker) in enumerate(sequence):
        digits = receiver.feed(timestamp, payload, marker, index * 0.02)
        assert len(digits) <= 1
        for digit in digits:
            assert digit.digit in DIGITS
            assert digit.duration_ms is None or digit.duration_ms >= 0
        reported += len(digits)
    assert receiver.malformed == sum(1 for _, payload, _ in sequence if len(payload) < 4)
    assert reported <= len(sequence)


# -- Digest ----------------------------------------------------------------------------------

NONCES = NonceManager(b"fuzz-secret-0123456789")
VERIFIER = DigestVerifier("pbx.example", NONCES)
ALICE_HA1 = compute_ha1("alice", "pbx.example", "secret")


def check_digest(text: str) -> None:
    with bounded("digest parsing"):
        NONCES.validate(text, 0.0)
        select_challenge([text, *text.split(",")])
        try:
            creds = parse_credentials(text)
        except DigestError:
            pass
        else:
            assert VERIFIER.verify(creds, "REGISTER", ALICE_HA1, 0.0) in ("ok", "stale", "failed")
            assert VERIFIER.verify(creds, "REGISTER", None, 0.0) == "failed"
        try:
            challenge = Challenge.parse(text)
            params = parse_challenge(text)
        except DigestError:
            return
        if not challenge.supported:
            return
        try:
            answer = build_authorization(
                text, username="alice", password="secret", method="INVITE", uri="sip:b@c"
            )
        except DigestError:
            return
        creds = parse_credentials(answer)
    assert (creds.realm, creds.nonce, creds.opaque) == (
        params["realm"], params["nonce"], params.get("opaque"),
    )  # fmt: skip


header_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=400)


@FUZZ
@given(header_text)
def test_digest_random_text(text: str) -> None:
    check_digest(text)


@FUZZ
@given(mutated(DIGEST_SEEDS, 9_000))
def test_digest_mutated_headers(data: bytes) -> None:
    check_digest(data.decode("utf-8", "replace"))
    check_digest(data.decode("latin-1"))  # what the SIP parser yields for non-UTF-8 bytes


printable = st.text(
    st.characters(exclude_categories=["Cs", "Cc"]) | st.sampled_from('"\\ ,='), max_size=20
)


@FUZZ
@given(
    username=printable.filter(bool),
    password=printable,
    uri=printable.filter(bool),
    method=st.sampled_from(["REGISTER", "INVITE", "BYE", "X-CUSTOM"]),
    which=st.integers(0, 1),
)
def test_digest_round_trip_authenticates(
    username: str, password: str, uri: str, method: str, which: int
) -> None:
    """What build_authorization writes, parse_credentials reads and the verifier accepts."""
    challenge = VERIFIER.challenges(1000.0)[which]
    answer = build_authorization(
        challenge, username=username, password=password, method=method, uri=uri
    )
    creds = parse_credentials(answer)
    assert (creds.username, creds.uri) == (username, uri)
    base = creds.algorithm.removesuffix("-sess")
    ha1 = compute_ha1(username, "pbx.example", password, base)
    assert VERIFIER.verify(creds, method, ha1, 1000.0) == "ok"
