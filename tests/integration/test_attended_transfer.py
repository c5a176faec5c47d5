"""AttendedTransfer over the HTTP API with real phones: consultation, transfer, refusals.

B (2000) talks to A (1000), puts that call on hold with the Hold command, and consults C
(3000) in a second call. AttendedTransfer then joins A and C in a new call and releases both
of B's legs. Each baresip phone plays its own tone (helpers and tones come from the
BlindTransfer tests), so A's and C's recordings show who they heard before and after.
A and C keep their SIP dialogs through the transfer: the end of each one's (only) recording
must be the other's tone.
"""

from __future__ import annotations

import time

from test_blind_transfer import (
    TONE_A,
    TONE_B,
    TONE_C,
    api_fails,
    assert_end_hears,
    assert_start_hears,
    establish,
    extension,
)

from peers.baresip import BaresipPhone
from peers.flows import PhoneFactory, no_calls_left, wait_for_state
from peers.pbx import PbxProcess

COMMAND = "AttendedTransfer"
REFUSED = f"Command '{COMMAND}' cannot be used here"
MISSING = "Missing or invalid parameter '{}' for command 'AttendedTransfer'"

Calls = dict[str, tuple[str, str, str]]  # CallId -> (Source, Destination, CallState)


# ---------------------------------------------------------------- helpers
def calls_now(pbx: PbxProcess) -> Calls:
    return {
        c["CallId"]: (c["Source"], c["Destination"], c["CallState"]) for c in pbx.active_calls()
    }


def wait_for_call(
    pbx: PbxProcess, source: str, dest: str, state: str, *, count: int, timeout: float = 15
) -> str:
    """Wait until `count` calls are active, one of them source -> dest in `state`; its id."""

    def matching(calls: list[dict[str, str]]) -> list[str]:
        return [
            c["CallId"]
            for c in calls
            if (c["Source"], c["Destination"], c["CallState"]) == (source, dest, state)
        ]

    calls = pbx.wait_for_calls(
        lambda calls: len(calls) == count and len(matching(calls)) == 1,
        timeout=timeout,
        interval=0.1,
    )
    return matching(calls)[0]


def hold(pbx: PbxProcess, call_id: str) -> None:
    result = pbx.api("Hold", auth=True, CallId=call_id)
    assert result.code == 200, result.text


def attended(pbx: PbxProcess, transferred: str, target: str, *, alias: bool = False) -> None:
    name = "TranferredCallId" if alias else "TransferredCallId"
    result = pbx.api(COMMAND, auth=True, **{name: transferred, "TargetCallId": target})
    assert result.code == 200, result.text


def consult(
    pbx: PbxProcess, a: BaresipPhone, b: BaresipPhone, c: BaresipPhone, *, c_calls_b: bool
) -> tuple[str, str]:
    """A calls B, B holds it (Hold command), then B consults C (B dials C, or C dials B).

    Returns (transferred call id, target call id): A -> B on Hold and B <-> C InCall.
    """
    held_id = establish(pbx, a, b)
    time.sleep(2.5)  # A and B hear each other first
    hold(pbx, held_id)
    wait_for_state(pbx, "Hold", timeout=5)
    if c_calls_b:
        c.dial(f"sip:2000@{pbx.sip_address}")
        source, dest = "3000", "2000"
    else:
        b.dial(f"sip:3000@{pbx.sip_address}")
        source, dest = "2000", "3000"
    c.wait_for_event("CALL_ESTABLISHED", 15)
    b.wait_for_event("CALL_ESTABLISHED", 15)  # B's second call
    target_id = wait_for_call(pbx, source, dest, "InCall", count=2)
    assert calls_now(pbx)[held_id] == ("1000", "2000", "Hold")
    assert target_id != held_id
    return held_id, target_id


def transferred_call(pbx: PbxProcess, old_ids: set[str]) -> str:
    """After the transfer: the one active call is a new InCall 1000 -> 3000; its CallId."""
    call = wait_for_state(pbx, "InCall", timeout=10)
    assert call["CallId"] not in old_ids, f"transfer reused an original CallId: {call}"
    assert (call["Source"], call["Destination"]) == ("1000", "3000"), call
    return call["CallId"]


def assert_history(
    pbx: PbxProcess,
    held: tuple[str, str, str],
    target: tuple[str, str, str],
    new_id: str,
    new_state: str,
) -> None:
    """After stop(): both original calls (id, source, destination) ended TransferCompleted,
    and the new call 1000 -> 3000, answered, began when they ended and ended `new_state`."""
    rows = {row.call_id: row for row in pbx.history()}
    listing = [str(row) for row in rows.values()]
    assert set(rows) == {held[0], target[0], new_id}, listing
    for call_id, source, dest in (held, target):
        row = rows[call_id]
        assert (row.source, row.destination, row.state) == (
            source,
            dest,
            "TransferCompleted",
        ), listing
        assert row.answer_time is not None and row.end_time is not None, listing
        assert row.end_time <= rows[new_id].start_time, listing
    new = rows[new_id]
    assert (new.source, new.destination, new.state) == ("1000", "3000", new_state), listing
    assert new.answer_time is not None and new.talk_duration >= 3.0, listing


# ---------------------------------------------------------------- tests
def test_attended_transfer_joins_the_held_caller_and_the_target(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C)
    held_id, target_id = consult(pbx, a, b, c, c_calls_b=False)
    time.sleep(2.5)  # B and C talk

    attended(pbx, held_id, target_id)
    b.wait_for_event("CALL_CLOSED", 5)
    b.wait_for_event("CALL_CLOSED", 5)
    call_id = transferred_call(pbx, {held_id, target_id})
    assert not a.events("CALL_CLOSED") and not c.events("CALL_CLOSED"), "A or C was released"
    for old in (held_id, target_id):
        api_fails(pbx, 601, f"Call not found with ID '{old}'", "Hangup", CallId=old)
    time.sleep(3.5)

    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert len(a.events("CALL_ESTABLISHED")) == 1, "A's dialog was replaced"
    assert len(c.events("CALL_ESTABLISHED")) == 1, "C's dialog was replaced"
    assert len(b.events("CALL_CLOSED")) == 2

    assert_start_hears(a, 1.0, TONE_B)
    assert_start_hears(c, 1.0, TONE_B)
    assert_end_hears(a, 2.5, TONE_C)
    assert_end_hears(c, 2.5, TONE_A)

    assert pbx.stop() == 0
    assert_history(
        pbx,
        (held_id, "1000", "2000"),
        (target_id, "2000", "3000"),
        call_id,
        "CallerHungUp",
    )


def test_attended_transfer_when_the_target_called_the_transferor(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    """The consultation call C -> B: B is its callee; the new call is still A -> C, and C
    hanging up ends it as the callee. The alias TranferredCallId is accepted."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C)
    held_id, target_id = consult(pbx, a, b, c, c_calls_b=True)
    time.sleep(1.0)

    attended(pbx, held_id, target_id, alias=True)
    b.wait_for_event("CALL_CLOSED", 5)
    b.wait_for_event("CALL_CLOSED", 5)
    call_id = transferred_call(pbx, {held_id, target_id})
    assert not a.events("CALL_CLOSED") and not c.events("CALL_CLOSED"), "A or C was released"
    time.sleep(3.5)

    c.hangup()
    c.wait_for_event("CALL_CLOSED", 10)
    a.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert_end_hears(a, 2.5, TONE_C)
    assert_end_hears(c, 2.5, TONE_A)

    assert pbx.stop() == 0
    assert_history(
        pbx,
        (held_id, "1000", "2000"),
        (target_id, "3000", "2000"),
        call_id,
        "CalleeHungUp",
    )


def test_attended_transfer_refusals_leave_both_calls_alone(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C, answermode="manual")
    d = extension(pbx, make_phone, "4000", TONE_A)
    e = extension(pbx, make_phone, "5000", TONE_B)
    held_id = establish(pbx, a, b)
    hold(pbx, held_id)
    wait_for_state(pbx, "Hold", timeout=5)

    # the consultation call still rings
    b.dial(f"sip:3000@{pbx.sip_address}")
    c.wait_for_event("CALL_INCOMING", 15)
    ringing_id = wait_for_call(pbx, "2000", "3000", "Ringing", count=2)
    api_fails(pbx, 303, REFUSED, COMMAND, TransferredCallId=held_id, TargetCallId=ringing_id)
    c.command("accept")
    c.wait_for_event("CALL_ESTABLISHED", 10)
    target_id = wait_for_call(pbx, "2000", "3000", "InCall", count=2)
    assert target_id == ringing_id

    # an unrelated call D -> E shares no party with either
    d.dial(f"sip:5000@{pbx.sip_address}")
    e.wait_for_event("CALL_ESTABLISHED", 15)
    other_id = wait_for_call(pbx, "4000", "5000", "InCall", count=3)
    before = calls_now(pbx)
    assert before == {
        held_id: ("1000", "2000", "Hold"),
        target_id: ("2000", "3000", "InCall"),
        other_id: ("4000", "5000", "InCall"),
    }

    for transferred, target in ((held_id, held_id), (target_id, target_id)):
        api_fails(pbx, 303, REFUSED, COMMAND, TransferredCallId=transferred, TargetCallId=target)
    for transferred, target in ((held_id, other_id), (other_id, target_id)):
        api_fails(pbx, 303, REFUSED, COMMAND, TransferredCallId=transferred, TargetCallId=target)
    api_fails(
        pbx,
        601,
        "Call not found with ID 'nOSuCH'",
        COMMAND,
        TransferredCallId="nOSuCH",
        TargetCallId=target_id,
    )
    api_fails(
        pbx,
        601,
        "Call not found with ID 'nOSuCH'",
        COMMAND,
        TransferredCallId=held_id,
        TargetCallId="nOSuCH",
    )
    for params in ({}, {"TransferredCallId": ""}, {"TranferredCallId": ""}):
        api_fails(
            pbx, 302, MISSING.format("TransferredCallId"), COMMAND, TargetCallId=target_id, **params
        )
    for params in ({}, {"TargetCallId": ""}):
        api_fails(
            pbx, 302, MISSING.format("TargetCallId"), COMMAND, TransferredCallId=held_id, **params
        )

    time.sleep(0.5)
    assert calls_now(pbx) == before
    for phone in (a, b, c, d, e):
        assert not phone.events("CALL_CLOSED"), f"{phone.account.user}: a refusal hung up"

    # the calls still work: the alias spelling transfers
    attended(pbx, held_id, target_id, alias=True)
    b.wait_for_event("CALL_CLOSED", 5)
    b.wait_for_event("CALL_CLOSED", 5)
    calls = pbx.wait_for_calls(
        lambda calls: len(calls) == 2 and other_id in {c["CallId"] for c in calls}
    )
    (new,) = [call for call in calls if call["CallId"] != other_id]
    assert new["CallId"] not in {held_id, target_id}, new
    assert (new["Source"], new["Destination"], new["CallState"]) == ("1000", "3000", "InCall")
    assert not a.events("CALL_CLOSED") and not c.events("CALL_CLOSED")
