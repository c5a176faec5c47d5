"""SIGTERM during a call: both phones are told, pypbx exits 0, history says Aborted.

In an answered call both phones are SIPp scenarios that can only finish by receiving a BYE
and answering it (neither hangs up itself), so their exit status proves the BYEs arrived
and were well-formed enough for SIPp to match them to the dialogs. In a ringing call the
caller must get a final response (503) and the callee a CANCEL.
"""

from __future__ import annotations

import time

from peers.flows import (
    PbxFactory,
    SippFactory,
    caller,
    final_status,
    finish,
    start_callee,
    wait_for_state,
)

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")


def test_sigterm_during_a_call_hangs_up_both_phones_and_records_aborted(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    uas = start_callee(pbx, sipp, "uas_answer", *CALLEE)  # waits for a BYE
    uac = caller(pbx, sipp, "uac_far_bye", CALLEE[0], *CALLER).start()  # waits for a BYE
    call = wait_for_state(pbx, "InCall")
    time.sleep(1.0)

    stopping = time.monotonic()
    status = pbx.stop(timeout=10.0)
    took = time.monotonic() - stopping
    assert status == 0, f"pypbx exit status {status} after SIGTERM\n{pbx.log_tail()}"
    assert took < 10.0

    caller_result, callee_result = finish(uac, uas)
    for result in (caller_result, callee_result):
        (bye,) = result.received(method="BYE")
        assert {m.header("Call-ID") for m in result.trace()} == {bye.header("Call-ID")}

    (row,) = pbx.history()
    assert row.call_id == call["CallId"]
    assert row.state == "Aborted"
    assert row.answer_time is not None and row.end_time is not None
    assert row.talk_duration >= 0.9


def test_sigterm_while_ringing_refuses_the_caller_and_cancels_the_callee(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    uas = start_callee(pbx, sipp, "uas_ring", *CALLEE)  # needs CANCEL, then its 487 ACKed
    uac = caller(pbx, sipp, "uac_refused", CALLEE[0], *CALLER).start()
    call = wait_for_state(pbx, "Ringing")
    time.sleep(0.5)

    assert pbx.stop(timeout=10.0) == 0, pbx.log_tail()
    caller_result, _ = finish(uac, uas)
    assert final_status(caller_result) == 503

    (row,) = pbx.history()
    assert (row.call_id, row.state) == (call["CallId"], "Aborted")
    assert row.answer_time is None and row.talk_duration == 0
