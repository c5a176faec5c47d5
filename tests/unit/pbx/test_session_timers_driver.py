"""The B2BUA's session-timer driver against a fake B2BUA: headers on 2xx, refreshes sent,
responses to them, expiry, 422 retries. Timers are fired by hand after moving the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pypbx.pbx.call import Call, Leg, LegKind
from pypbx.pbx.session_timers import SessionTimers
from pypbx.sip.dialog import Dialog
from pypbx.sip.digest_client import DigestClient, UserCredentials
from pypbx.sip.message import (
    Headers,
    Message,
    Request,
    Response,
    SipURI,
    Via,
    make_response,
    parse_message,
)
from pypbx.sip.sdp import PCMU, SessionDescription, build_sdp

SDP = build_sdp(
    address="127.0.0.1",
    port=20000,
    codecs=[PCMU],
    telephone_event=None,
    direction="sendrecv",
    session_id=1,
    session_version=1,
)


def invite(extra: str = "", cseq: int = 1) -> Request:
    text = (
        "INVITE sip:2000@pbx.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKphone\r\n"
        "From: <sip:1000@pbx.test>;tag=phone\r\n"
        "To: <sip:2000@pbx.test>\r\n"
        "Call-ID: call-1\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        "Contact: <sip:1000@127.0.0.1:5070>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


@dataclass
class Sent:
    request: Request
    on_response: Callable[[Response], None]
    on_timeout: Callable[[], None] | None


@dataclass
class FakeStack:
    requests: list[Sent] = field(default_factory=list)
    stateless: list[Message] = field(default_factory=list)

    def new_via(self, peer_ip: str, transport: str) -> Via:
        return Via("UDP", "127.0.0.1", 5060, {"branch": f"z9hG4bK{len(self.requests)}"})

    def send_request(
        self,
        request: Request,
        dest: Any,
        transport: str,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        self.requests.append(Sent(request, on_response, on_timeout))

    def send_stateless(self, message: Message, dest: Any, transport: str) -> None:
        self.stateless.append(message)


class FakeMedia:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def accept_callee_sdp(self, leg: Leg, sdp: SessionDescription) -> bool:
        self.calls.append("accept_callee_sdp")
        return True

    def update_remote_media(self, leg: Leg, sdp: SessionDescription) -> None:
        self.calls.append("update_remote_media")

    def bridge(self, call: Call, callee: Leg) -> None:
        self.calls.append("bridge")

    def update_hold_state(self, call: Call) -> None:
        self.calls.append("update_hold_state")


class FakeB2BUA:
    def __init__(self) -> None:
        self.stack = FakeStack()
        self.leg_media = FakeMedia()
        self.on_call_ended: list[Callable[[Call], None]] = []
        self.aborted: list[Call] = []
        self.now = 1000.0

    def _now(self) -> float:
        return self.now

    def _contact(self, leg: Leg) -> SipURI:
        return SipURI.parse("sip:pypbx@127.0.0.1:5060")

    def _abort(self, call: Call) -> None:
        self.aborted.append(call)

    def _parse_sdp(self, message: Message) -> SessionDescription | None:
        return SessionDescription.parse(message.body) if message.body else None


@pytest.fixture
def b2bua() -> FakeB2BUA:
    return FakeB2BUA()


@pytest.fixture
def timers(b2bua: FakeB2BUA) -> SessionTimers:
    return SessionTimers(b2bua, session_expires=60, min_se=10)  # type: ignore[arg-type]


def caller_leg(request: Request) -> Leg:
    call = Call(id="AbC123")
    leg = Leg(
        kind=LegKind.CALLER,
        call=call,
        peer=("127.0.0.1", 5070),
        transport="udp",
        local_tag="pbxtag",
        invite=request,
        local_sdp=SDP,
        extension_id="1000",
    )
    leg.dialog = Dialog.from_uas(request, "pbxtag")
    call.caller = leg
    return leg


def answer_to(request: Request, status: int = 200, headers: str = "") -> Response:
    response = make_response(request, status, to_tag="pbxtag")
    for line in filter(None, headers.split("\n")):
        name, _, value = line.partition(":")
        response.headers.add(name.strip(), value.strip())
    return response


def callee_leg(b2bua: FakeB2BUA, timers: SessionTimers, response_headers: str) -> Leg:
    """A callee leg answered by a 2xx carrying `response_headers` (one 'Name: value' a line)."""
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKout")
    headers.add("From", "<sip:1000@127.0.0.1>;tag=pbxfrom")
    headers.add("To", "<sip:2000@127.0.0.1>")
    headers.add("Call-ID", "out-1")
    headers.add("CSeq", "1 INVITE")
    headers.add("Contact", "<sip:pypbx@127.0.0.1:5060>")
    timers.offer(headers)
    request = Request("INVITE", SipURI.parse("sip:2000@127.0.0.1:5080"), headers, b"")
    call = Call(id="XyZ789")
    leg = Leg(
        kind=LegKind.CALLEE,
        call=call,
        peer=("127.0.0.1", 5080),
        transport="udp",
        local_tag="pbxfrom",
        invite=request,
        local_sdp=SDP,
        extension_id="2000",
    )
    ok = make_response(request, 200, to_tag="phone2")
    ok.headers.add("Contact", "<sip:2000@127.0.0.1:5080>")
    for line in filter(None, response_headers.split("\n")):
        name, _, value = line.partition(":")
        ok.headers.add(name.strip(), value.strip())
    leg.dialog = Dialog.from_uac(request, ok)
    call.callee = leg
    timers.fork_answered(leg, ok)
    return leg


# ------------------------------------------------------------------ requests we answer


async def test_require_of_an_unknown_extension_gets_420(timers: SessionTimers) -> None:
    response = timers.check_request(invite("Require: timer, 100rel\r\n"))
    assert response is not None
    assert (response.status, response.reason) == (420, "Bad Extension")
    assert response.headers.get("Unsupported") == "100rel"


async def test_require_timer_is_accepted(timers: SessionTimers) -> None:
    assert timers.check_request(invite("Require: timer\r\nSession-Expires: 30\r\n")) is None


async def test_too_small_interval_gets_422_with_min_se(timers: SessionTimers) -> None:
    response = timers.check_request(invite("Supported: timer\r\nSession-Expires: 9\r\n"))
    assert response is not None
    assert (response.status, response.reason) == (422, "Session Interval Too Small")
    assert response.headers.get("Min-SE") == "10"


async def test_malformed_timer_header_gets_400(timers: SessionTimers) -> None:
    response = timers.check_request(invite("Session-Expires: soon\r\n"))
    assert response is not None
    assert (response.status, response.reason) == (
        400,
        "Bad Session-Expires: 'soon' is not delta-seconds",
    )


async def test_answer_sets_headers_and_the_phone_refreshes(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    request = invite("Supported: timer\r\nSession-Expires: 30\r\nAllow: INVITE, UPDATE\r\n")
    leg = caller_leg(request)
    response = answer_to(request)
    timers.answered(leg, request, response)
    assert response.headers.get("Session-Expires") == "30;refresher=uac"
    assert response.headers.get("Require") == "timer"
    assert response.headers.get("Supported") == "timer"
    timer = timers.active(leg)
    assert timer is not None and not timer.we_refresh
    assert timer.deadline == 1000.0 + 30 - 10  # min(32, 30 / 3)

    b2bua.now = 1015.0  # the phone refreshes in time: a new interval
    refresh = invite("Supported: timer\r\nSession-Expires: 30;refresher=uac\r\n", cseq=2)
    timers.answered(leg, refresh, answer_to(refresh))
    timer = timers.active(leg)
    assert timer is not None and timer.refreshed_at == 1015.0

    b2bua.now = 1035.0  # then it stops: the call is ended
    timers._fire(leg)
    assert b2bua.aborted == [leg.call]
    assert timers.active(leg) is None


async def test_early_fire_rearms_without_acting(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    request = invite("Supported: timer\r\nSession-Expires: 30\r\n")
    leg = caller_leg(request)
    timers.answered(leg, request, answer_to(request))
    b2bua.now = 1005.0
    timers._fire(leg)
    assert b2bua.aborted == []
    assert timers.active(leg) is not None


async def test_phone_without_timer_support_gets_no_timer(timers: SessionTimers) -> None:
    request = invite()
    leg = caller_leg(request)
    response = answer_to(request)
    timers.answered(leg, request, response)
    assert "Session-Expires" not in response.headers
    assert "Require" not in response.headers
    assert response.headers.get("Supported") == "timer"
    assert timers.active(leg) is None


async def test_supported_without_interval_gets_ours(timers: SessionTimers) -> None:
    request = invite("Supported: timer\r\n")
    leg = caller_leg(request)
    response = answer_to(request)
    timers.answered(leg, request, response)
    assert response.headers.get("Session-Expires") == "60;refresher=uac"


async def test_reinvite_crossing_our_refresh_gets_491(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac\nRequire: timer")
    b2bua.now += 10
    timers._fire(leg)
    assert [s.request.method for s in b2bua.stack.requests] == ["INVITE"]
    response = timers.check_request(invite(cseq=5), leg)
    assert response is not None and response.status == 491


async def test_call_end_stops_the_timers(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    assert timers.active(leg) is not None
    for listener in b2bua.on_call_ended:
        listener(leg.call)
    assert timers.active(leg) is None


# ------------------------------------------------------------------ INVITEs we send


async def test_offer_headers(b2bua: FakeB2BUA) -> None:
    headers = Headers()
    SessionTimers(b2bua, session_expires=1800, min_se=90).offer(headers)  # type: ignore[arg-type]
    assert headers.items() == [
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("Min-SE", "90"),
    ]
    quiet = Headers()
    SessionTimers(b2bua, session_expires=0).offer(quiet)  # type: ignore[arg-type]
    assert quiet.items() == [("Supported", "timer")]


async def test_422_retry_asks_for_the_callee_minimum(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "")
    too_small = make_response(leg.invite, 422, to_tag="x")
    too_small.headers.add("Min-SE", "120")
    retry = timers.retry_invite(leg, too_small)
    assert retry is not None
    assert retry.cseq == (2, "INVITE")
    assert retry.top_via.branch != leg.invite.top_via.branch
    assert retry.headers.get("Session-Expires") == "120"
    assert retry.headers.get("Min-SE") == "120"
    assert retry.from_addr.tag == leg.invite.from_addr.tag
    assert retry.call_id == leg.invite.call_id
    leg.invite = retry
    same = make_response(retry, 422, to_tag="x")
    same.headers.add("Min-SE", "120")
    assert timers.retry_invite(leg, same) is None  # no increase: give up


async def test_422_retries_are_bounded(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    leg = callee_leg(b2bua, timers, "")
    for attempt in range(4):
        response = make_response(leg.invite, 422, to_tag="x")
        response.headers.add("Min-SE", str(100 + attempt))
        retry = timers.retry_invite(leg, response)
        if attempt < 3:
            assert retry is not None
            leg.invite = retry
        else:
            assert retry is None


async def test_callee_without_session_expires_gets_no_timer(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "")
    assert timers.active(leg) is None


# ------------------------------------------------------------------ refreshes we send


async def test_we_refresh_with_reinvite_and_ack_the_2xx(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac\nRequire: timer")
    timer = timers.active(leg)
    assert timer is not None and timer.we_refresh and timer.deadline == 1010.0
    b2bua.now = 1010.0
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    request = sent.request
    assert request.method == "INVITE"
    assert request.cseq == (2, "INVITE")
    assert request.headers.get("Session-Expires") == "20;refresher=uac"
    assert request.headers.get("Supported") == "timer"
    assert request.headers.get("Contact") == "<sip:pypbx@127.0.0.1:5060>"
    assert request.body == SDP.serialize()
    timers._fire(leg)  # a second firing while the refresh is out sends nothing
    assert len(b2bua.stack.requests) == 1

    b2bua.now = 1011.0
    ok = make_response(request, 200, to_tag=None)
    ok.headers.add("Session-Expires", "20;refresher=uac")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = SDP.serialize()
    sent.on_response(ok)
    (ack,) = b2bua.stack.stateless
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq == (2, "ACK")
    assert leg.last_ack is ack
    assert b2bua.leg_media.calls == ["accept_callee_sdp", "update_hold_state"]
    timer = timers.active(leg)
    assert timer is not None and timer.refreshed_at == 1011.0
    sent.on_response(ok)  # a retransmitted 2xx is only ACKed again
    assert len(b2bua.stack.stateless) == 2
    assert timers.active(leg) is timer


async def test_refresh_2xx_without_session_expires_ends_the_timer(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    sent.on_response(make_response(sent.request, 200, to_tag=None))
    assert timers.active(leg) is None
    assert b2bua.aborted == []


async def test_we_refresh_with_update_when_allowed(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    leg = callee_leg(
        b2bua, timers, "Session-Expires: 20;refresher=uac\nAllow: INVITE, ACK, BYE, UPDATE"
    )
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    assert sent.request.method == "UPDATE" and sent.request.body == b""
    # the phone turns out not to implement it: a re-INVITE instead, at once
    sent.on_response(make_response(sent.request, 501, to_tag=None))
    assert [s.request.method for s in b2bua.stack.requests] == ["UPDATE", "INVITE"]
    assert b2bua.stack.stateless == []


@pytest.mark.parametrize("status", [408, 481])
async def test_refresh_rejected_as_gone_ends_the_call(
    b2bua: FakeB2BUA, timers: SessionTimers, status: int
) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    sent.on_response(make_response(sent.request, status, to_tag=None))
    assert b2bua.aborted == [leg.call]


async def test_refresh_timeout_ends_the_call(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    assert sent.on_timeout is not None
    sent.on_timeout()
    assert b2bua.aborted == [leg.call]


async def test_refresh_422_asks_again_with_more(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    response = make_response(sent.request, 422, to_tag=None)
    response.headers.add("Min-SE", "40")
    sent.on_response(response)
    assert len(b2bua.stack.requests) == 2
    assert b2bua.stack.requests[1].request.headers.get("Session-Expires") == "40;refresher=uac"


async def test_other_refresh_failure_keeps_the_call(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    sent.on_response(make_response(sent.request, 500, to_tag=None))
    assert b2bua.aborted == []
    timer = timers.active(leg)
    assert timer is not None and timer.deadline == b2bua.now + 10


async def test_callee_refreshes_and_we_watch(b2bua: FakeB2BUA, timers: SessionTimers) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 30;refresher=uas")
    timer = timers.active(leg)
    assert timer is not None and not timer.we_refresh
    b2bua.now += 20
    timers._fire(leg)
    assert b2bua.aborted == [leg.call]
    assert b2bua.stack.requests == []


async def test_challenged_refresh_on_an_outside_line_is_answered(
    b2bua: FakeB2BUA, timers: SessionTimers
) -> None:
    leg = callee_leg(b2bua, timers, "Session-Expires: 20;refresher=uac")
    leg.digest = DigestClient(UserCredentials("trunkuser", "secret"))
    b2bua.now += 10
    timers._fire(leg)
    (sent,) = b2bua.stack.requests
    challenge = make_response(sent.request, 407, to_tag=None)
    challenge.headers.add(
        "Proxy-Authenticate", 'Digest realm="provider", nonce="abc123", algorithm=MD5'
    )
    sent.on_response(challenge)
    assert len(b2bua.stack.requests) == 2
    retry = b2bua.stack.requests[1]
    assert retry.request.cseq == (sent.request.cseq[0] + 1, "INVITE")
    assert 'username="trunkuser"' in (retry.request.headers.get("Proxy-Authorization") or "")
    assert leg.dialog is not None and leg.dialog.local_seq == retry.request.cseq[0]
    ok = make_response(retry.request, 200, to_tag=None)
    ok.headers.add("Session-Expires", "20;refresher=uac")
    retry.on_response(ok)
    (ack,) = b2bua.stack.stateless
    assert isinstance(ack, Request) and ack.cseq == (retry.request.cseq[0], "ACK")
    assert b2bua.aborted == []
