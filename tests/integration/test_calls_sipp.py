"""Calls through pypbx between SIPp peers: extension 1000 (caller) -> 2000 (callee).

The callee first registers with register.xml from the same port its UAS scenario then
listens on, so pypbx's binding points at the UAS whether it routes by Contact or by source
address. Each SIPp side checks the exact message flow it sees; both must exit 0.
"""

from __future__ import annotations

import pytest

from peers.pbx import PbxProcess
from peers.sipp import Sipp

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")


@pytest.fixture
def pbx(start_pbx) -> PbxProcess:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    pbx.add_sip_extension("3000", "pw-3000")  # configured, never registered
    return pbx


def start_callee(pbx: PbxProcess, sipp, scenario: str, pause_ms: int = 1000) -> Sipp:
    """Register 2000 from a fresh port, then run the callee scenario on that same port."""
    reg = sipp("register", remote=pbx.sip_address, service=CALLEE[0], auth=CALLEE)
    result = reg.run()
    assert result.ok, result.describe()
    uas = sipp(scenario, local_port=reg.local_port, rtp_echo=True, pause_ms=pause_ms, timeout=40)
    uas.start().wait_until_listening()
    return uas


def caller(pbx: PbxProcess, sipp, scenario: str, number: str = CALLEE[0], **kwargs) -> Sipp:
    return sipp(
        scenario,
        remote=pbx.sip_address,
        service=number,
        auth=CALLER,
        keys={"caller": CALLER[0]},
        timeout=40,
        **kwargs,
    )


def finish(*runs: Sipp) -> None:
    """Wait for every SIPp run (callers first), then assert each one followed its script."""
    results = [run.wait() for run in runs]
    for result in results:
        assert result.ok, result.describe()


def no_calls_left(pbx: PbxProcess) -> None:
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)


def test_answered_call_caller_hangs_up(pbx, sipp):
    uas = start_callee(pbx, sipp, "uas_answer")
    uac = caller(pbx, sipp, "uac_call", pause_ms=4000).start()
    calls = pbx.wait_for_calls(
        lambda calls: any(c.get("CallState") == "InCall" for c in calls), timeout=15
    )
    (call,) = calls
    assert (call["Source"], call["Destination"]) == ("1000", "2000")
    assert call["CallId"]
    finish(uac, uas)
    no_calls_left(pbx)


def test_answered_call_callee_hangs_up(pbx, sipp):
    uas = start_callee(pbx, sipp, "uas_answer_bye", pause_ms=2000)
    uac = caller(pbx, sipp, "uac_far_bye").start()
    finish(uac, uas)
    no_calls_left(pbx)


def test_caller_cancels_while_callee_rings(pbx, sipp):
    uas = start_callee(pbx, sipp, "uas_ring")
    uac = caller(pbx, sipp, "uac_cancel", pause_ms=1500).start()
    finish(uac, uas)
    no_calls_left(pbx)


def test_busy_callee_486_reaches_the_caller(pbx, sipp):
    uas = start_callee(pbx, sipp, "uas_busy")
    uac = caller(pbx, sipp, "uac_busy").start()
    finish(uac, uas)
    no_calls_left(pbx)


def test_unknown_number_gets_404(pbx, sipp):
    finish(caller(pbx, sipp, "uac_not_found", number="9999").start())
    no_calls_left(pbx)


def test_configured_but_unregistered_extension_gets_480(pbx, sipp):
    finish(caller(pbx, sipp, "uac_unavailable", number="3000").start())
    no_calls_left(pbx)
