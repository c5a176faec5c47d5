"""Call features through pypbx with SIPp peers: ring timeout, TCP, hold, early media.

Extension 1000 (caller) calls 2000 (callee, a SIPp UAS registered from the port it then
listens on). Each SIPp side checks the message flow it sees; the test then looks into the
message traces for what the scenarios cannot express (timing, SDP contents, transport).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from peers.flows import (
    PbxFactory,
    PhoneFactory,
    SippFactory,
    caller,
    finish,
    no_calls_left,
    start_callee,
    wait_for_state,
)
from peers.pbx import PbxProcess
from peers.sipp import TracedMessage

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")
RING_TIMEOUT = 3


def setup(pbx: PbxProcess) -> PbxProcess:
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    return pbx


def sdp_media(message: TracedMessage) -> tuple[str, int, list[str]]:
    """(connection address, audio port, a= lines) of a message's SDP body."""
    address, port, attributes = "", 0, []
    for line in message.body.splitlines():
        if line.startswith("c=IN IP4 "):
            address = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
        elif line.startswith("a="):
            attributes.append(line[2:])
    assert address and port, f"no usable SDP in:\n{message.text}"
    return address, port, attributes


def only(messages: list[TracedMessage], what: str) -> TracedMessage:
    assert len(messages) == 1, f"expected one {what}, got {len(messages)}"
    return messages[0]


def test_unanswered_call_gets_480_after_the_ring_timeout_and_the_callee_a_cancel(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = setup(start_pbx(config={"sip": {"ring_timeout": RING_TIMEOUT}}))
    uas = start_callee(pbx, sipp, "uas_ring", *CALLEE)
    uac = caller(pbx, sipp, "uac_unavailable", CALLEE[0], *CALLER).start()
    caller_result, callee_result = finish(uac, uas)  # uas_ring requires CANCEL, 487 ACKed
    no_calls_left(pbx)

    invites = [m for m in caller_result.trace() if m.sent and m.method == "INVITE"]
    authenticated = invites[-1]
    assert authenticated.header("Proxy-Authorization") or authenticated.header("Authorization")
    rejected = only(caller_result.received(status=480), "480")
    waited = (rejected.time - authenticated.time).total_seconds()
    assert RING_TIMEOUT - 0.1 <= waited <= RING_TIMEOUT + 1.0, f"480 after {waited:.2f} s"

    rung = only(callee_result.received(method="INVITE"), "INVITE at the callee")
    cancel = only(callee_result.received(method="CANCEL"), "CANCEL at the callee")
    rang = (cancel.time - rung.time).total_seconds()
    assert RING_TIMEOUT - 0.2 <= rang <= RING_TIMEOUT + 1.0, f"CANCEL after {rang:.2f} s"
    # the CANCEL matches the INVITE it cancels (RFC 3261 §9.1)
    assert cancel.header("Call-ID") == rung.header("Call-ID")
    assert cancel.require("CSeq").split()[0] == rung.require("CSeq").split()[0]
    assert cancel.header("Via") == rung.header("Via")


def test_call_over_tcp_end_to_end(start_pbx: PbxFactory, sipp: SippFactory) -> None:
    pbx = setup(start_pbx())
    uas = start_callee(pbx, sipp, "uas_answer", *CALLEE, transport="t1")
    config = pbx.api("GetConfig", ExtensionId=CALLEE[0])
    assert config.root.findtext("Config/LastIPAddress") == f"127.0.0.1:{uas.local_port} (Tcp)"

    uac = caller(pbx, sipp, "uac_call", CALLEE[0], *CALLER, transport="t1").start()
    wait_for_state(pbx, "InCall")
    caller_result, callee_result = finish(uac, uas)
    no_calls_left(pbx)

    # every message each side got came over TCP: pypbx's own Vias say so too
    for result in (caller_result, callee_result):
        assert "UDP message" not in result.messages, result.describe()
    invite = only(callee_result.received(method="INVITE"), "INVITE at the callee")
    assert invite.require("Via").startswith("SIP/2.0/TCP "), invite.text
    bye = only(callee_result.received(method="BYE"), "BYE at the callee")
    assert bye.require("Via").startswith("SIP/2.0/TCP "), bye.text
    ok = only(caller_result.received(status=200, method="BYE"), "200 to the caller's BYE")
    assert ok.require("Via").startswith("SIP/2.0/TCP "), ok.text


# who holds: (caller scenario, callee scenario, caller -d ms). The holder answers (or is
# answered), 0.5 s later re-INVITEs a=sendonly, 1.5 s later a=sendrecv; then the caller's BYE.
HOLDERS = {
    "caller": ("uac_hold", "uas_answer", 1000),
    "callee": ("uac_call", "uas_hold", 3500),
}


@pytest.mark.parametrize("holder", HOLDERS)
def test_reinvite_hold_and_resume(start_pbx: PbxFactory, sipp: SippFactory, holder: str) -> None:
    caller_scenario, callee_scenario, caller_pause_ms = HOLDERS[holder]
    pbx = setup(start_pbx())
    uas = start_callee(pbx, sipp, callee_scenario, *CALLEE)
    uac = caller(pbx, sipp, caller_scenario, CALLEE[0], *CALLER, pause_ms=caller_pause_ms)
    uac.start()
    wait_for_state(pbx, "Hold", timeout=10)
    wait_for_state(pbx, "InCall", timeout=5)
    caller_result, callee_result = finish(uac, uas)  # each 200 had the mirrored a= line
    no_calls_left(pbx)

    # pypbx's SDP as the holder saw it: the initial offer or answer, then the two answers
    seen = caller_result if holder == "caller" else callee_result
    initial, hold, resume = (m for m in seen.received() if "m=audio" in m.body)
    directions = [
        [a for a in sdp_media(m)[2] if a in ("sendrecv", "sendonly", "recvonly", "inactive")]
        for m in (hold, resume)
    ]
    assert directions == [["recvonly"], ["sendrecv"]], directions
    assert (hold.status, resume.status) == (200, 200)
    # same pypbx media address and port throughout; the SDP version goes up with each change
    assert {sdp_media(m)[:2] for m in (initial, hold, resume)} == {sdp_media(initial)[:2]}
    versions = [int(m.body.split("o=", 1)[1].split()[2]) for m in (initial, hold, resume)]
    assert versions[0] < versions[1] < versions[2], versions


def test_early_media_183_with_sdp_reaches_the_caller(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = setup(start_pbx())
    uas = start_callee(pbx, sipp, "uas_early_media", *CALLEE)
    uac = caller(pbx, sipp, "uac_call", CALLEE[0], *CALLER).start()
    caller_result, callee_result = finish(uac, uas)
    no_calls_left(pbx)

    progress = only(caller_result.received(status=183), "183 at the caller")
    address, port, _ = sdp_media(progress)
    assert address == "127.0.0.1"
    assert pbx.rtp_ports[0] <= port <= pbx.rtp_ports[1], f"183 SDP port {port} is not pypbx's"
    callee_ports = {
        sdp_media(m)[1]
        for m in callee_result.trace()
        if m.sent and m.status in (183, 200) and m.cseq_method == "INVITE"
    }
    assert port not in callee_ports, "the callee's own SDP leaked to the caller"
    answer = only(caller_result.received(status=200, method="INVITE"), "200 at the caller")
    assert sdp_media(answer)[:2] == (address, port), "early and final media differ"
    trace = caller_result.trace()
    assert trace.index(progress) < trace.index(answer)
    # the early dialog is the one that gets confirmed: same To tag (RFC 3261 §12.1)
    assert progress.require("To") == answer.require("To")
    assert ";tag=" in progress.require("To")


def test_a_phone_that_vanishes_mid_call_is_detected_by_rtp_timeout(
    start_pbx: PbxFactory, make_phone: PhoneFactory
) -> None:
    """No BYE ever comes from a phone that lost power: after `rtp_timeout` seconds without
    its RTP, pypbx ends the call, releases the other phone and writes the history row."""
    pbx = start_pbx(config={"media": {"rtp_timeout": 2}})
    pbx.add_sip_extension("1000", "pw-1000")
    pbx.add_sip_extension("2000", "pw-2000")
    a = make_phone("1000", tone=1500.0, registrar=pbx.sip_address, password="pw-1000")
    b = make_phone("2000", tone=2000.0, registrar=pbx.sip_address, password="pw-2000")
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    call_id = wait_for_state(pbx, "InCall")["CallId"]
    # hold and unhold leave the watch alone (a phone holding with `inactive` sends nothing)
    assert pbx.api("Hold", CallId=call_id).code == 200
    time.sleep(3.0)
    assert pbx.api("Unhold", CallId=call_id).code == 200
    assert wait_for_state(pbx, "InCall")["CallId"] == call_id
    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)  # gone without a word
    b.wait_for_event("CALL_CLOSED", 15)
    no_calls_left(pbx)
    history = pbx.api("GetCallHistory", CallId=call_id)
    assert history.root.findtext("Calls/Call/State") == "Error", history.text
