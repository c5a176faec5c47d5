"""The dial plan and ring groups with real phones: rules from the TOML file and from the
API, fallbacks when nobody answers, ring groups ringing all members or hunting."""

from __future__ import annotations

import time

from peers.baresip import BaresipPhone
from peers.flows import PbxFactory, PhoneFactory, no_calls_left, wait_for_state
from peers.pbx import PbxProcess


def phone(
    pbx: PbxProcess, make_phone: PhoneFactory, ext: str, *, answer: bool = True
) -> BaresipPhone:
    pbx.add_sip_extension(ext, f"pw-{ext}")
    tone = 1000.0 + int(ext) / 10
    p = make_phone(ext, tone=tone, registrar=pbx.sip_address, password=f"pw-{ext}")
    if not answer:
        p.set_answermode("manual")
    return p


def finish(pbx: PbxProcess, caller: BaresipPhone, callee: BaresipPhone) -> None:
    caller.hangup()
    callee.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)


def test_toml_rule_routes_a_short_number_and_falls_back_on_no_answer(
    start_pbx: PbxFactory, make_phone: PhoneFactory
) -> None:
    rules = [
        {
            "name": "sales",
            "pattern": "7",
            "destination": "2000",
            "ring_time": 3,
            "on_no_answer": "3000",
        },
    ]
    pbx = start_pbx(config={"dialplan": {"rules": rules}})
    a = phone(pbx, make_phone, "1000")
    b = phone(pbx, make_phone, "2000", answer=False)
    c = phone(pbx, make_phone, "3000")
    started = time.monotonic()
    a.dial(f"sip:7@{pbx.sip_address}")
    b.wait_for_event("CALL_INCOMING", 10)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    assert time.monotonic() - started >= 2.5  # 2000 rang its 3 s first
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("1000", "3000")
    b.wait_for_event("CALL_CLOSED", 10)  # 2000 stopped ringing
    finish(pbx, a, c)


def test_api_managed_rule_and_ring_all_group(pbx: PbxProcess, make_phone: PhoneFactory) -> None:
    a = phone(pbx, make_phone, "1000")
    b = phone(pbx, make_phone, "2000", answer=False)
    c = phone(pbx, make_phone, "3000")
    pbx.add_config(
        "RingGroup", "RingGroupExtensionInfo", ID="600", Enabled="true", Members="2000,3000"
    )
    pbx.add_config(
        "DialPlanRule",
        "DialPlanRuleExtensionInfo",
        ID="support",
        Enabled="true",
        Order="10",
        Pattern="55X",
        Destination="600",
    )
    a.dial(f"sip:551@{pbx.sip_address}")  # the rule sends 55X to the group
    b.wait_for_event("CALL_INCOMING", 10)  # both members ring
    c.wait_for_event("CALL_ESTABLISHED", 15)
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("1000", "3000")  # the member who answered
    b.wait_for_event("CALL_CLOSED", 10)
    finish(pbx, a, c)


def test_hunt_group_rings_members_in_turn(pbx: PbxProcess, make_phone: PhoneFactory) -> None:
    a = phone(pbx, make_phone, "1000")
    b = phone(pbx, make_phone, "2000", answer=False)
    c = phone(pbx, make_phone, "3000")
    pbx.add_config(
        "RingGroup",
        "RingGroupExtensionInfo",
        ID="601",
        Enabled="true",
        Members="2000,3000",
        Strategy="Hunt",
        RingTime="3",
    )
    a.dial(f"sip:601@{pbx.sip_address}")
    b.wait_for_event("CALL_INCOMING", 10)
    assert not c.events("CALL_INCOMING")  # one member at a time
    c.wait_for_event("CALL_ESTABLISHED", 15)
    b.wait_for_event("CALL_CLOSED", 10)
    call = wait_for_state(pbx, "InCall")
    assert call["Destination"] == "3000"
    finish(pbx, a, c)
