"""pypbx keeps a live call up while its SIP port is flooded with junk.

Garbage and truncated datagrams must be dropped; requests that parse far enough to be
answered but are malformed must get 400; meanwhile the baresip call keeps carrying audio,
the process stays up and the HTTP API keeps answering.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from pathlib import Path

import pytest

from peers.pbx import PbxProcess
from peers.tones import tone_power_ratio, wav_duration

TONE_A = 440.0
TONE_B = 1000.0


def valid_invite(port: int) -> bytes:
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        "INVITE sip:2000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1000@127.0.0.1>;tag=junk1\r\n"
        "To: <sip:2000@127.0.0.1>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:1000@127.0.0.1:{port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def junk_datagrams(port: int, count: int = 500) -> list[bytes]:
    """Random bytes, truncated requests, lookalikes and control characters (seeded)."""
    rng = random.Random(4711)
    invite = valid_invite(port)
    out: list[bytes] = [b"", b"\r\n", b"\r\n\r\n", b"\x00" * 64, b"SIP/2.0", b"INVITE"]
    out.append(b"A" * 65000)  # near the UDP maximum
    out.append(invite.replace(b"\r\n", b"\n", 3))
    out.append(invite.replace(b"CSeq: 1 INVITE", b"CSeq: \xff\xfe INVITE"))
    out.append(invite.replace(b"Via:", b"Via\x00:"))
    out.append(b"INVITE sip:2000@127.0.0.1 SIP/2.0\r\n" + b"X-Long: " + b"x" * 20000 + b"\r\n\r\n")
    out.append(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 2000 + b"\r\n")
    while len(out) < count:
        kind = rng.randrange(3)
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 1400)))
        elif kind == 1:
            out.append(invite[: rng.randrange(1, len(invite))])
        else:
            cut = bytearray(invite)
            for _ in range(rng.randrange(1, 20)):
                cut[rng.randrange(len(cut))] = rng.randrange(256)
            out.append(bytes(cut))
    return out


def options(
    port: int,
    *,
    uri: str = "sip:2000@127.0.0.1",
    cseq: str = "1 OPTIONS",
    max_forwards: str = "70",
    content_length: str = "0",
) -> bytes:
    branch = uuid.uuid4().hex
    return (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "From: <sip:probe@127.0.0.1>;tag=probe1\r\n"
        "To: <sip:2000@127.0.0.1>\r\n"
        f"Call-ID: probe-{branch}@127.0.0.1\r\n"
        f"CSeq: {cseq}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


MALFORMED_BUT_PARSABLE = {
    "cseq_method_mismatch": {"cseq": "1 INVITE"},
    "max_forwards_not_a_number": {"max_forwards": "abc"},
    "content_length_not_a_number": {"content_length": "abc"},
    "content_length_beyond_datagram": {"content_length": "500"},
    "request_uri_without_host": {"uri": "sip:2000@"},
    "request_uri_port_out_of_range": {"uri": "sip:2000@127.0.0.1:99999"},
}


def ask(pbx: PbxProcess, make_request) -> bytes:
    """Send one request from a fresh socket and return the first response (or b'')."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        port = sock.getsockname()[1]
        sock.sendto(make_request(port), ("127.0.0.1", pbx.sip_port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return b""


@pytest.fixture
def call(pbx, make_phone):
    """A live call 1000 (440 Hz) -> 2000 (1000 Hz) through pypbx."""
    pbx.add_sip_extension("1000", "pw-1000")
    pbx.add_sip_extension("2000", "pw-2000")
    a = make_phone("1000", tone=TONE_A, registrar=pbx.sip_address, password="pw-1000")
    b = make_phone("2000", tone=TONE_B, registrar=pbx.sip_address, password="pw-2000")
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    pbx.wait_for_calls(lambda calls: len(calls) == 1, timeout=10)
    return a, b


def test_junk_on_the_sip_port_leaves_a_live_call_untouched(pbx, call):
    a, b = call
    established = time.monotonic()
    time.sleep(1.5)

    # 1. garbage and truncated datagrams: dropped without a word
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        for payload in junk_datagrams(port):
            sock.sendto(payload, ("127.0.0.1", pbx.sip_port))
            time.sleep(0.001)

    # 2. garbage over TCP: the connection is dropped, nothing else happens
    with socket.create_connection(("127.0.0.1", pbx.sip_port), timeout=3) as tcp:
        tcp.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4)
        tcp.sendall(valid_invite(5999)[:200])

    # 3. malformed but parsable requests: answered 400
    for name, fields in MALFORMED_BUT_PARSABLE.items():
        reply = ask(pbx, lambda port, fields=fields: options(port, **fields))
        status_line = reply.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"SIP/2.0 400 "), f"{name}: got {reply[:300]!r}"

    # the server still answers a well-formed request
    reply = ask(pbx, lambda port: options(port))
    assert reply.startswith(b"SIP/2.0 "), f"no answer to a valid OPTIONS: {reply!r}"
    assert not reply.startswith(b"SIP/2.0 400"), reply[:300]

    # the call is still up, audio still flows for a while, then a normal hangup
    time.sleep(3.0)
    assert pbx.alive(), pbx.log_tail()
    (active,) = pbx.active_calls()
    assert active["CallState"] == "InCall"
    assert not a.events("CALL_CLOSED") and not b.events("CALL_CLOSED")
    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)
    talk = time.monotonic() - established
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)

    for phone, tone in ((a, TONE_B), (b, TONE_A)):
        recording = phone.received_recording()
        duration = wav_duration(recording)
        # a gap in RTP would shorten the recording: baresip writes what it receives
        assert duration > talk - 2.0, (
            f"{phone.account.user} heard only {duration:.1f} s of {talk:.1f} s"
        )
        tail = tone_power_ratio(recording, tone, skip_seconds=duration - 2.0)
        assert tail > 0.7, f"{phone.account.user}: last 2 s hold {tail:.2f} of {tone} Hz"


# RFC 4475 / RFC 5118 torture messages (their verdicts: tests/unit/sip/test_torture.py).
# Their Vias name hosts that do not exist, so answers go nowhere: what counts is that the
# process stays up, the call keeps going, and a fresh request is still answered.
TORTURE = Path(__file__).parents[1] / "unit" / "sip" / "torture"


def options_probe(port: int) -> bytes:
    return (
        f"OPTIONS sip:2000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-after-torture;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=probe\r\n"
        "To: <sip:2000@127.0.0.1>\r\n"
        "Call-ID: after-torture@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_torture_messages_leave_the_process_and_a_live_call_intact(pbx: PbxProcess, call) -> None:
    a, b = call
    messages = sorted(TORTURE.glob("*.dat"))
    assert len(messages) >= 60
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for path in messages:
            data = path.read_bytes()
            if len(data) < 65000:
                sock.sendto(data, ("127.0.0.1", pbx.sip_port))
    for path in messages:  # over TCP too, one connection each (a framing error closes it)
        with socket.create_connection(("127.0.0.1", pbx.sip_port), timeout=3) as tcp:
            tcp.sendall(path.read_bytes())
    assert pbx.alive()
    (active,) = pbx.active_calls()
    assert active["CallState"] == "InCall"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        sock.sendto(options_probe(sock.getsockname()[1]), ("127.0.0.1", pbx.sip_port))
        assert sock.recv(65535).startswith(b"SIP/2.0 200 ")
    a.hangup()
    b.wait_for_event("CALL_CLOSED", 10)


@pytest.mark.parametrize(
    ("method", "uri"),
    [("INVITE", "nobodyknowsthisscheme:totallyopaquecontent"), ("OPTIONS", "tel:+15551234567")],
)
def test_a_request_uri_of_an_unknown_scheme_is_answered_416(
    pbx: PbxProcess, method: str, uri: str
) -> None:
    """RFC 3261 8.2.2.1 (and RFC 4475 3.3.2 unkscm): nothing here routes on such URIs."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        port = sock.getsockname()[1]
        request = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-scheme-{method};rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:probe@127.0.0.1>;tag=probe\r\n"
            "To: <sip:2000@127.0.0.1>\r\n"
            f"Call-ID: scheme-{method}@127.0.0.1\r\n"
            f"CSeq: 1 {method}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", pbx.sip_port))
        answer = sock.recv(65535)
        while answer.startswith(b"SIP/2.0 1"):  # 100 Trying first, for an INVITE
            answer = sock.recv(65535)
    assert answer.startswith(b"SIP/2.0 416 Unsupported URI Scheme\r\n"), answer[:80]
