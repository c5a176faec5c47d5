"""Session timers (RFC 4028) through pypbx, with SIPp phones on both sides.

pypbx runs with a test-sized minimum (`[sip] session_min_se = 2`) and asks callees for
6 s, so every interval here is a few seconds. Extension 1000 calls 2000. On the caller's
side pypbx is the UAS: it grants the phone's interval with the phone as refresher, refuses
a too short one with 422, and hangs up a phone that stops refreshing. On the callee's side
it is the UAC: it offers a timer, and refreshes when the callee makes it the refresher.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from peers.flows import PbxFactory, SippFactory, finish, listen, no_calls_left, register
from peers.pbx import PbxProcess
from peers.sipp import Sipp, SippResult, TracedMessage

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")
MIN_SE = 2
OFFERED = 6  # what pypbx asks callees for
CONFIG = {"sip": {"session_min_se": MIN_SE, "session_expires": OFFERED}}


@pytest.fixture
def pbx(start_pbx: PbxFactory) -> PbxProcess:
    pbx = start_pbx(config=CONFIG)
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    return pbx


def callee(pbx: PbxProcess, sipp: SippFactory, scenario: str, **keys: str) -> Sipp:
    """Register 2000 from a fresh port and start `scenario` there (-key NAME VALUE each)."""
    port = register(pbx, sipp, *CALLEE).local_port
    if not keys:
        return listen(sipp, scenario, port)
    uas = sipp(scenario, local_port=port, rtp_echo=True, keys=keys, timeout=40)
    uas.start().wait_until_listening()
    return uas


def caller(sipp: SippFactory, pbx: PbxProcess, scenario: str, **kwargs: Any) -> Sipp:
    keys = {"caller": CALLER[0], **kwargs.pop("keys", {})}
    return sipp(
        scenario,
        remote=pbx.sip_address,
        service=CALLEE[0],
        auth=CALLER,
        keys=keys,
        timeout=40,
        **kwargs,
    ).start()


def answers(result: SippResult, method: str = "INVITE") -> list[TracedMessage]:
    """The 200s a run received to its `method` requests."""
    return result.received(status=200, method=method)


def requests(result: SippResult, method: str) -> list[TracedMessage]:
    return [m for m in result.trace() if not m.sent and m.method == method]


def only_history_row(pbx: PbxProcess) -> Any:
    no_calls_left(pbx)
    assert pbx.stop() == 0, pbx.log_tail()
    (row,) = pbx.history()
    return row


def test_caller_that_refreshes_keeps_its_call(pbx: PbxProcess, sipp: SippFactory) -> None:
    """Session-Expires 4, a re-INVITE every 1.5 s, six times: the call outlives two
    intervals and ends with the caller's BYE."""
    uas = callee(pbx, sipp, "uas_answer")
    uac = caller(sipp, pbx, "uac_timer_refresh", keys={"se": "4"}, pause_ms=1500)
    uac_result, _ = finish(uac, uas)

    first, *refreshes = answers(uac_result)
    assert first.require("Session-Expires") == "4;refresher=uac"
    assert first.require("Require") == "timer"
    assert len(refreshes) == 6
    for answer in refreshes:
        assert answer.require("Session-Expires") == "4;refresher=uac"
        assert answer.body, "a re-INVITE's 200 carries pypbx's SDP"
    bye = next(m for m in uac_result.trace() if m.sent and m.method == "BYE")
    assert (bye.time - first.time).total_seconds() > 2 * 4

    row = only_history_row(pbx)
    assert row.state == "CallerHungUp"
    assert row.talk_duration > 2 * 4


def test_caller_that_stops_refreshing_is_hung_up(pbx: PbxProcess, sipp: SippFactory) -> None:
    """Session-Expires 6 and no refresh: pypbx sends BYE to both phones min(32, 6/3) = 2 s
    before the interval runs out, and the history says Error, as for a call whose RTP
    stopped."""
    uas = callee(pbx, sipp, "uas_answer")
    uac = caller(sipp, pbx, "uac_timer_silent", keys={"se": "6"})
    uac_result, uas_result = finish(uac, uas)

    (answer,) = answers(uac_result)
    assert answer.require("Session-Expires") == "6;refresher=uac"
    (bye,) = requests(uac_result, "BYE")
    waited = (bye.time - answer.time).total_seconds()
    assert 6 - 2 - 0.3 <= waited <= 6 + 0.5, f"BYE {waited:.2f} s after the 200"
    assert len(requests(uas_result, "BYE")) == 1

    row = only_history_row(pbx)
    assert row.state == "Error"
    assert 6 - 2 - 0.5 <= row.talk_duration <= 6 + 0.5


def test_too_short_interval_gets_422_with_min_se(pbx: PbxProcess, sipp: SippFactory) -> None:
    """Session-Expires 1 < 2: 422 with Min-SE 2; the caller asks again with 2 and gets it."""
    uas = callee(pbx, sipp, "uas_answer")
    uac = caller(sipp, pbx, "uac_timer_too_small", keys={"se": "1"}, pause_ms=500)
    uac_result, _ = finish(uac, uas)

    (too_small,) = uac_result.received(status=422)
    assert too_small.first_line == "SIP/2.0 422 Session Interval Too Small"
    assert too_small.require("Min-SE") == str(MIN_SE)
    (answer,) = answers(uac_result)
    assert answer.require("Session-Expires") == f"{MIN_SE};refresher=uac"
    assert only_history_row(pbx).state == "CallerHungUp"


@pytest.mark.parametrize(
    ("allow", "method"),
    [("INVITE, ACK, BYE, CANCEL, OPTIONS", "INVITE"), ("INVITE, ACK, BYE, UPDATE", "UPDATE")],
    ids=["re-INVITE", "UPDATE"],
)
def test_pypbx_refreshes_a_callee_that_makes_it_the_refresher(
    pbx: PbxProcess, sipp: SippFactory, allow: str, method: str
) -> None:
    """The callee grants 4 s with refresher=uac (pypbx): pypbx refreshes every 2 s, with
    UPDATE when the callee allows it, else a re-INVITE with its unchanged SDP."""
    uas = callee(pbx, sipp, "uas_timer", se="4", refresher="uac", allow=allow)
    uac = caller(sipp, pbx, "uac_call", pause_ms=7000)
    _, uas_result = finish(uac, uas)

    invite, *reinvites = requests(uas_result, "INVITE")
    assert invite.require("Supported") == "timer"
    assert invite.require("Session-Expires") == str(OFFERED)
    assert invite.require("Min-SE") == str(MIN_SE)
    refreshes = reinvites if method == "INVITE" else requests(uas_result, "UPDATE")
    if method == "UPDATE":
        assert reinvites == []
    assert 3 <= len(refreshes) <= 4, [m.first_line for m in refreshes]
    for refresh in refreshes:
        assert refresh.require("Session-Expires") == "4;refresher=uac"
        assert refresh.require("Supported") == "timer"
        assert refresh.header("Contact") is not None
        if method == "INVITE":
            assert refresh.body == invite.body, "a refresh re-offers the same SDP"
    gaps = [(b.time - a.time).total_seconds() for a, b in itertools.pairwise(refreshes)]
    assert all(1.5 <= gap <= 2.5 for gap in gaps), gaps
    assert only_history_row(pbx).state == "CallerHungUp"


def test_callee_that_stops_refreshing_is_hung_up(pbx: PbxProcess, sipp: SippFactory) -> None:
    """The callee grants 4 s with refresher=uas (itself) and never refreshes: pypbx hangs up
    both phones 4 - 4/3 s after the answer."""
    uas = callee(pbx, sipp, "uas_timer", se="4", refresher="uas", allow="INVITE, ACK, BYE")
    uac = caller(sipp, pbx, "uac_far_bye")
    uac_result, uas_result = finish(uac, uas)

    assert requests(uas_result, "INVITE")[1:] == [], "pypbx is not the refresher here"
    (answer,) = answers(uac_result)
    (bye,) = requests(uac_result, "BYE")
    waited = (bye.time - answer.time).total_seconds()
    assert 4 - 4 / 3 - 0.3 <= waited <= 4 + 0.5, f"BYE {waited:.2f} s after the 200"
    assert len(requests(uas_result, "BYE")) == 1
    assert only_history_row(pbx).state == "Error"
