"""DialPlan.route and DialPlan.fallback (spec 9.3, 9.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.pbx.dialplan import (
    ANY_CALLER,
    NEXT,
    Caller,
    DialPlan,
    FromExtensions,
    FromLines,
    FromNumber,
    Kind,
    NumberPattern,
    RouteDecision,
    Rule,
    TimeCondition,
)
from pypbx.pbx.dialplan_rules import RuleFieldError
from pypbx.pbx.states import RoutingState

MONDAY_NOON = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
SATURDAY_NOON = datetime(2024, 1, 6, 12, 0, tzinfo=UTC)
ALICE = Caller("1000", None, "1000")
BOB = Caller("1001", None, "1001")
OUTSIDE = Caller(None, "voipservice1", "+36 30 555 1234")
ANONYMOUS = Caller(None, None, "")


def rule(order: int, pattern: str, destination: str, **fields: Any) -> Rule:
    return Rule(
        order=order, pattern=NumberPattern.compile(pattern), destination=destination, **fields
    )


def route(plan: DialPlan, dialed: str, caller: Caller = ALICE, **kw: Any) -> RouteDecision | None:
    return plan.route(kw.get("kind", Kind.CALL), caller, dialed, kw.get("now", MONDAY_NOON))


def destination(plan: DialPlan, dialed: str, caller: Caller = ALICE, **kw: Any) -> str | None:
    decision = route(plan, dialed, caller, **kw)
    return None if decision is None else decision.destination


# --- route ---------------------------------------------------------------------------------


def test_first_matching_rule_in_ascending_order_wins() -> None:
    plan = DialPlan(
        [
            rule(30, "!", "catch-all"),
            rule(10, "1XXX", "internal"),
            rule(20, "1001", "never: 1XXX comes first"),
        ]
    )
    assert [r.order for r in plan.rules] == [10, 20, 30]
    assert destination(plan, "1001") == "internal"
    assert destination(plan, "555") == "catch-all"


def test_equal_orders_keep_their_given_order() -> None:
    plan = DialPlan([rule(5, "1X", "first"), rule(5, "1X", "second")])
    assert destination(plan, "12") == "first"


def test_no_rule_means_none_for_the_implicit_extension_route() -> None:
    plan = DialPlan([rule(1, "0.", "voipservice1")])
    assert route(plan, "1001") is None
    assert route(DialPlan([]), "1001") is None


def test_disabled_rules_are_skipped() -> None:
    plan = DialPlan([rule(1, "1001", "off", enabled=False), rule(2, "1001", "on")])
    assert destination(plan, "1001") == "on"
    assert route(DialPlan([rule(1, "1001", "off", enabled=False)]), "1001") is None


def test_rules_only_serve_their_kind() -> None:
    plan = DialPlan(
        [
            rule(1, "+36.", "smsmodem1", kind=Kind.SMS),
            rule(2, "!", "smtp1", kind=Kind.EMAIL),
            rule(3, "+36.", "voipservice1"),
        ]
    )
    assert destination(plan, "+36301234567") == "voipservice1"
    assert destination(plan, "+36301234567", kind=Kind.SMS) == "smsmodem1"
    assert destination(plan, "someone@example.com", kind=Kind.EMAIL) == "smtp1"
    assert destination(plan, "1001", kind=Kind.SMS) is None


@pytest.mark.parametrize(
    ("from_", "caller", "expected"),
    [
        (ANY_CALLER, ALICE, True),
        (ANY_CALLER, OUTSIDE, True),
        (ANY_CALLER, ANONYMOUS, True),
        (FromExtensions(("1000", "1002")), ALICE, True),
        (FromExtensions(("1000", "1002")), BOB, False),
        (FromExtensions(("1000",)), OUTSIDE, False),
        (FromExtensions(("1000",)), Caller(None, None, "1000"), False),  # the number is no ID
        (FromLines(("voipservice1",)), OUTSIDE, True),
        (FromLines(("voipservice2",)), OUTSIDE, False),
        (FromLines(("voipservice1",)), ALICE, False),
        (FromLines(("VoipService1",)), OUTSIDE, False),  # names compare exactly
        (FromNumber(NumberPattern.compile("+3630.")), OUTSIDE, True),
        (FromNumber(NumberPattern.compile("+3620.")), OUTSIDE, False),
        (FromNumber(NumberPattern.compile("10XX")), ALICE, True),
        (FromNumber(NumberPattern.compile(r"re:\+36(20|30)\d{7}")), OUTSIDE, True),
        (FromNumber(NumberPattern.compile("!")), ANONYMOUS, True),
        (FromNumber(NumberPattern.compile(".")), ANONYMOUS, False),
    ],
)
def test_from(from_: Any, caller: Caller, expected: bool) -> None:
    plan = DialPlan([rule(1, "!", "target", from_=from_)])
    assert (destination(plan, "5", caller) == "target") is expected


def test_incoming_call_on_an_outside_line_matches_the_did() -> None:
    plan = DialPlan(
        [
            rule(1, "+3612345678", "1000", from_=FromLines(("voipservice1",))),
            rule(2, "+3612345679", "ivr", from_=FromLines(("voipservice1",))),
        ]
    )
    assert destination(plan, "+36 1 234 5678", OUTSIDE) == "1000"
    assert destination(plan, "+36 (1) 234-5679", OUTSIDE) == "ivr"
    assert destination(plan, "+3612345678", ALICE) is None


def test_time_conditions() -> None:
    office = TimeCondition.parse("Mon-Fri 08:00-17:00 UTC")
    plan = DialPlan(
        [
            rule(1, "100", "reception", time_condition=office),
            rule(2, "100", "voicemail"),
        ]
    )
    assert destination(plan, "100") == "reception"
    assert destination(plan, "100", now=SATURDAY_NOON) == "voicemail"
    assert destination(plan, "100", now=datetime(2024, 1, 1, 17, 0, tzinfo=UTC)) == "voicemail"


def test_decision_carries_rewriting_caller_id_and_ring_time() -> None:
    plan = DialPlan(
        [
            rule(1, "00.", "voipservice1", strip_digits=2, add_prefix="+", caller_id="3612222222"),
            rule(2, "9.", "voipservice2", strip_digits=1, ring_time=30),
            rule(3, "06.", "voipservice1", strip_digits=2, add_prefix="+36"),
            rule(4, "*7X", "features", strip_digits=10, add_prefix="#"),
            rule(5, "1XXX", "ext"),
        ]
    )
    international = route(plan, "00 36 1 234 5678")
    assert international is not None
    assert international.destination == "voipservice1"
    assert international.number == "+3612345678"
    assert international.caller_id == "3612222222"
    assert international.ring_time == 90
    assert international.tried == ("voipservice1",)
    assert international.rule is plan.rules[0]

    access_code = route(plan, "9 234567")
    assert access_code is not None
    assert (access_code.number, access_code.ring_time, access_code.caller_id) == (
        "234567",
        30,
        None,
    )
    national = route(plan, "06-30-123-4567")
    assert national is not None and national.number == "+36301234567"
    stripped_away = route(plan, "*75")
    assert stripped_away is not None and stripped_away.number == "#"
    internal = route(plan, "1001")
    assert internal is not None and internal.number == "1001"


def test_naive_now_is_refused() -> None:
    plan = DialPlan([rule(1, "!", "x")])
    with pytest.raises(ValueError, match="timezone-aware"):
        plan.route(Kind.CALL, ALICE, "1", datetime(2024, 1, 1))


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DialPlan([], max_attempts=0)


# --- fallback ------------------------------------------------------------------------------


def fallback(
    plan: DialPlan, decision: RouteDecision | None, outcome: str, dialed: str = "812"
) -> RouteDecision | None:
    assert decision is not None
    return plan.fallback(decision, outcome, ALICE, dialed, MONDAY_NOON)


def chain(plan: DialPlan, dialed: str, outcomes: list[str]) -> list[str]:
    """Destinations tried while each attempt ends with the next outcome."""
    decision = route(plan, dialed)
    tried = []
    for outcome in outcomes:
        if decision is None:
            break
        tried.append(decision.destination)
        decision = plan.fallback(decision, outcome, ALICE, dialed, MONDAY_NOON)
    if decision is not None:
        tried.append(decision.destination)
    return tried


def test_fallback_destination_keeps_the_rules_number_caller_id_and_ring_time() -> None:
    plan = DialPlan(
        [
            rule(
                1,
                "0.",
                "voipservice1",
                strip_digits=1,
                caller_id="3612222222",
                ring_time=40,
                on_error="voipservice2",
            )
        ]
    )
    first = route(plan, "0 234567")
    second = fallback(plan, first, "Error", "0 234567")
    assert second is not None and first is not None
    assert second.destination == "voipservice2"
    assert second.number == "234567"
    assert second.caller_id == "3612222222"
    assert second.ring_time == 40
    assert second.rule is first.rule
    assert second.tried == ("voipservice1", "voipservice2")


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        ("Busy", "on_busy"),
        ("NoAnswer", "on_no_answer"),
        ("NotFound", "on_not_found"),
        ("Error", "on_error"),
    ],
)
def test_each_outcome_reads_its_own_field(outcome: str, field: str) -> None:
    plan = DialPlan([rule(1, "812", "812", **{field: "voicemail"})])
    decision = fallback(plan, route(plan, "812"), outcome)
    assert decision is not None and decision.destination == "voicemail"
    for other in {"Busy", "NoAnswer", "NotFound", "Error"} - {outcome}:
        assert fallback(plan, route(plan, "812"), other) is None


def test_routing_state_members_are_outcomes() -> None:
    plan = DialPlan([rule(1, "812", "812", on_busy="813")])
    decision = fallback(plan, route(plan, "812"), RoutingState.BUSY)
    assert decision is not None and decision.destination == "813"


def test_unknown_outcome_is_a_programming_error() -> None:
    plan = DialPlan([rule(1, "812", "812")])
    with pytest.raises(ValueError, match="unknown outcome 'Calling'"):
        fallback(plan, route(plan, "812"), "Calling")


def test_empty_fallback_ends_the_call() -> None:
    plan = DialPlan([rule(1, "812", "812"), rule(2, "812", "never")])
    assert fallback(plan, route(plan, "812"), "NoAnswer") is None


def test_fallback_chain_within_one_rule() -> None:
    """812 busy -> 813; 813 unanswered -> voicemail; voicemail fails -> end."""
    plan = DialPlan([rule(1, "812", "812", on_busy="813", on_no_answer="voicemail")])
    assert chain(plan, "812", ["Busy", "NoAnswer", "Error"]) == ["812", "813", "voicemail"]
    assert chain(plan, "812", ["NoAnswer", "Busy"]) == ["812", "voicemail", "813"]


def test_fallback_never_retries_a_destination_of_the_chain() -> None:
    plan = DialPlan([rule(1, "812", "812", on_busy="813")])
    assert chain(plan, "812", ["Busy", "Busy", "Busy"]) == ["812", "813"]
    looping = DialPlan([rule(1, "812", "812", on_no_answer="812")])
    assert chain(looping, "812", ["NoAnswer"]) == ["812"]


def test_next_continues_with_the_following_matching_rules() -> None:
    """The Ozeki example as rules: 812, if busy 813, if that is busy too voicemail."""
    plan = DialPlan(
        [
            rule(1, "812", "812", on_busy=NEXT, on_no_answer=NEXT),
            rule(2, "9.", "voipservice1"),  # does not match: skipped
            rule(3, "812", "off", enabled=False, on_busy=NEXT),
            rule(4, "812", "sms", kind=Kind.SMS),
            rule(5, "812", "weekend", time_condition=TimeCondition.parse("Sat,Sun")),
            rule(6, "8XX", "813", add_prefix="55", on_busy=NEXT),
            rule(7, "!", "voicemail"),
        ]
    )
    first = route(plan, "812")
    second = fallback(plan, first, "Busy")
    assert second is not None
    assert (second.destination, second.number, second.rule.order) == ("813", "55812", 6)
    assert second.tried == ("812", "813")
    third = fallback(plan, second, "Busy")
    assert third is not None
    assert (third.destination, third.number, third.tried) == (
        "voicemail",
        "812",
        ("812", "813", "voicemail"),
    )
    assert fallback(plan, third, "Busy") is None
    # 813 rings but nobody answers: rule 6 has no OnNoAnswer, the call ends
    assert fallback(plan, second, "NoAnswer") is None


def test_next_without_a_further_rule_ends_the_call() -> None:
    plan = DialPlan([rule(1, "900", "x", on_busy=NEXT), rule(2, "1XXX", "y")])
    assert fallback(plan, route(plan, "900"), "Busy", "900") is None


def test_next_takes_a_destination_already_tried() -> None:
    """Only On... destinations are guarded; Next obeys an explicit 'ring it again'."""
    plan = DialPlan(
        [
            rule(1, "812", "812", on_no_answer=NEXT),
            rule(2, "812", "group1", on_no_answer=NEXT),
            rule(3, "812", "812", on_no_answer="group1"),
        ]
    )
    assert chain(plan, "812", ["NoAnswer"] * 5) == ["812", "group1", "812"]


def test_next_and_fallback_destinations_mix() -> None:
    plan = DialPlan(
        [
            rule(1, "812", "812", on_busy="813", on_no_answer=NEXT),
            rule(2, "812", "814", on_busy="812", on_no_answer="voicemail"),
        ]
    )
    # 812 busy -> 813 (rule 1); 813 unanswered -> Next -> 814 (rule 2);
    # 814 busy -> 812 already tried -> end
    assert chain(plan, "812", ["Busy", "NoAnswer", "Busy"]) == ["812", "813", "814"]
    # 814 unanswered -> voicemail
    assert chain(plan, "812", ["Busy", "NoAnswer", "NoAnswer"]) == [
        "812",
        "813",
        "814",
        "voicemail",
    ]


def test_next_stays_within_the_kind() -> None:
    plan = DialPlan(
        [
            rule(1, "+36.", "smsmodem1", kind=Kind.SMS, on_error=NEXT),
            rule(2, "+36.", "voipservice1"),
            rule(3, "+36.", "smsmodem2", kind=Kind.SMS),
        ]
    )
    first = plan.route(Kind.SMS, ALICE, "+36301234567", MONDAY_NOON)
    assert first is not None
    second = plan.fallback(first, "Error", ALICE, "+36301234567", MONDAY_NOON)
    assert second is not None and second.destination == "smsmodem2"


def test_max_attempts_caps_any_chain() -> None:
    rules = [rule(i, "812", f"dest{i}", on_no_answer=NEXT) for i in range(1, 11)]
    plan = DialPlan(rules, max_attempts=3)
    assert chain(plan, "812", ["NoAnswer"] * 10) == ["dest1", "dest2", "dest3"]
    assert chain(DialPlan(rules), "812", ["NoAnswer"] * 20) == [f"dest{i}" for i in range(1, 11)]


def test_next_after_a_reload() -> None:
    """A decision made by the previous plan continues sensibly in the new one."""
    first_rule = rule(10, "812", "812", on_busy=NEXT)
    old = DialPlan([first_rule, rule(20, "812", "813")])
    decision = route(old, "812")
    inserted = DialPlan([rule(5, "7", "x"), first_rule, rule(20, "812", "814")])
    moved = fallback(inserted, decision, "Busy")
    assert moved is not None and moved.destination == "814"
    gone = DialPlan([rule(10, "812", "other"), rule(15, "812", "815"), rule(20, "812", "816")])
    after = fallback(gone, decision, "Busy")
    assert after is not None and after.destination == "815"


def test_fallback_refuses_naive_now() -> None:
    plan = DialPlan([rule(1, "812", "812", on_busy="813")])
    decision = route(plan, "812")
    assert decision is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        plan.fallback(decision, "Busy", ALICE, "812", datetime(2024, 1, 1))


_TARGETS = st.sampled_from([None, NEXT, "a", "b", "c", "d"])


@st.composite
def random_rules(draw: st.DrawFn) -> list[Rule]:
    count = draw(st.integers(1, 8))
    return [
        rule(
            draw(st.integers(0, 5)),
            draw(st.sampled_from(["812", "8XX", "!", "9."])),
            draw(st.sampled_from(["a", "b", "c", "d"])),
            enabled=draw(st.booleans()),
            on_busy=draw(_TARGETS),
            on_no_answer=draw(_TARGETS),
            on_not_found=draw(_TARGETS),
            on_error=draw(_TARGETS),
        )
        for _ in range(count)
    ]


@settings(max_examples=150, deadline=None)
@given(random_rules(), st.lists(st.sampled_from(["Busy", "NoAnswer", "NotFound", "Error"])))
def test_every_fallback_chain_terminates(rules: list[Rule], outcomes: list[str]) -> None:
    """Whatever the configuration, a chain ends well before max_attempts."""
    plan = DialPlan(rules, max_attempts=1000)
    decision = route(plan, "812")
    steps = 0
    while decision is not None:
        outcome = outcomes[steps % len(outcomes)] if outcomes else "Busy"
        decision = plan.fallback(decision, outcome, ALICE, "812", MONDAY_NOON)
        steps += 1
        # each rule is entered once through Next and tries at most its 4 distinct targets
        assert steps <= len(rules) * 5


# --- Rule invariants -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"order": -1}, "order", "must not be negative, got -1"),
        ({"destination": ""}, "destination", "must not be empty"),
        ({"destination": " 1000"}, "destination", "must not start or end with spaces, got ' 1000'"),
        ({"destination": "Next"}, "destination", "Next is not a destination"),
        ({"destination": "a\nb"}, "destination", "must not contain control characters"),
        ({"destination": "x" * 129}, "destination", "longer than 128 characters"),
        ({"name": "x\x00"}, "name", "must not contain control characters"),
        ({"strip_digits": -1}, "strip_digits", "must be between 0 and 64, got -1"),
        ({"strip_digits": 65}, "strip_digits", "must be between 0 and 64, got 65"),
        (
            {"add_prefix": "+36 "},
            "add_prefix",
            "must be at most 32 of the characters 0-9 + * #, got '+36 '",
        ),
        ({"caller_id": ""}, "caller_id", "must not be empty"),
        ({"ring_time": 0}, "ring_time", "must be between 1 and 3600 seconds, got 0"),
        ({"ring_time": 3601}, "ring_time", "must be between 1 and 3600 seconds, got 3601"),
        ({"on_busy": "next"}, "on_busy", "write Next, not 'next'"),
        ({"on_error": ""}, "on_error", "must not be empty"),
    ],
)
def test_rule_invariants(fields: dict[str, Any], field: str, problem: str) -> None:
    values: dict[str, Any] = {"order": 1, "destination": "1000"} | fields
    with pytest.raises(RuleFieldError) as info:
        rule(values.pop("order"), "1", values.pop("destination"), **values)
    assert (info.value.field, info.value.problem) == (field, problem)
    assert str(info.value) == f"{field}: {problem}"


def test_rule_defaults_follow_the_spec() -> None:
    plain = rule(1, "1001", "1001")
    assert plain.enabled is True
    assert plain.kind is Kind.CALL
    assert plain.from_ == ANY_CALLER
    assert (plain.strip_digits, plain.add_prefix, plain.caller_id) == (0, "", None)
    assert plain.ring_time == 90
    assert (plain.on_busy, plain.on_no_answer, plain.on_not_found, plain.on_error) == (None,) * 4
    assert plain.time_condition is None
