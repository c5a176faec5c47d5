"""Dial plan rules from TOML tables and to/from ConfigXML-style text fields."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.pbx.dialplan import (
    ANY_CALLER,
    FIELD_NAMES,
    NEXT,
    DialPlanError,
    FromExtensions,
    FromLines,
    FromNumber,
    Kind,
    NumberPattern,
    Rule,
    TimeCondition,
    format_caller_match,
    parse_caller_match,
    rule_from_fields,
    rule_to_fields,
    rules_from_toml,
)

TOML = """
[[dialplan.rules]]
order = 10
name = "office hours"
pattern = "100"
destination = "reception"
time_condition = "Mon-Fri 08:00-17:00 Europe/Budapest"
on_no_answer = "next"

[[dialplan.rules]]
order = 20
name = "out"
from = "ext:1000, 1001"
pattern = "00."
destination = "voipservice1"
strip_digits = 2
add_prefix = "+"
caller_id = "3612222222"
ring_time = 45
on_busy = "Next"
on_no_answer = "voicemail"
on_not_found = ""
on_error = "voipservice2"

[[dialplan.rules]]
name = "sms"
kind = "sms"
from = "num:+36."
pattern = "re:\\\\+36\\\\d+"
destination = "smsmodem1"
enabled = false

[[dialplan.rules]]
from = "line:voipservice1"
pattern = "+3612345678"
destination = "1000"
"""


def test_rules_from_toml() -> None:
    rules = rules_from_toml(tomllib.loads(TOML)["dialplan"]["rules"])
    office, out, sms, did = rules
    assert office == Rule(
        order=10,
        name="office hours",
        pattern=NumberPattern.compile("100"),
        destination="reception",
        time_condition=TimeCondition.parse("Mon-Fri 08:00-17:00 Europe/Budapest"),
        on_no_answer=NEXT,
    )
    assert out == Rule(
        order=20,
        name="out",
        from_=FromExtensions(("1000", "1001")),
        pattern=NumberPattern.compile("00."),
        destination="voipservice1",
        strip_digits=2,
        add_prefix="+",
        caller_id="3612222222",
        ring_time=45,
        on_busy=NEXT,
        on_no_answer="voicemail",
        on_not_found=None,
        on_error="voipservice2",
    )
    assert sms.order == 21  # appended after the rules above it
    assert sms.kind is Kind.SMS
    assert sms.enabled is False
    assert sms.from_ == FromNumber(NumberPattern.compile("+36."))
    assert sms.pattern.match("+36 30 123 4567")
    assert did.order == 22
    assert did.from_ == FromLines(("voipservice1",))
    assert did.name == ""


def test_toml_default_order_follows_the_largest_so_far() -> None:
    entries: list[dict[str, object]] = [
        {"pattern": "1", "destination": "a"},
        {"pattern": "2", "destination": "b", "order": 50},
        {"pattern": "3", "destination": "c", "order": 5},
        {"pattern": "4", "destination": "d"},
    ]
    assert [rule.order for rule in rules_from_toml(entries)] == [1, 50, 5, 51]
    assert rules_from_toml([]) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "x", "pattern": "1", "destination": "a", "patern": "2"},
            "dial plan rule 1 ('x'): unknown key 'patern'",
        ),
        (
            {"pattern": "1", "destination": "a", "From": "Any"},
            "dial plan rule 1: unknown key 'From'",
        ),
        ({"name": "x", "destination": "a"}, "dial plan rule 1 ('x'): missing key 'pattern'"),
        ({"pattern": "1"}, "dial plan rule 1: missing key 'destination'"),
        (
            {"pattern": "1", "destination": "a", "ring_time": "30"},
            "dial plan rule 1: ring_time: must be an integer, got '30'",
        ),
        (
            {"pattern": "1", "destination": "a", "order": True},
            "dial plan rule 1: order: must be an integer, got True",
        ),
        (
            {"pattern": "1", "destination": "a", "enabled": "yes"},
            "dial plan rule 1: enabled: must be true or false, got 'yes'",
        ),
        (
            {"pattern": 100, "destination": "a"},
            "dial plan rule 1: pattern: must be a string, got 100",
        ),
        (
            {"pattern": "1.2", "destination": "a"},
            "dial plan rule 1: pattern: pattern '1.2': '.' must be the last character",
        ),
        (
            {"pattern": "1", "destination": "a", "kind": "fax"},
            "dial plan rule 1: kind: must be Call, SMS or Email, got 'fax'",
        ),
        (
            {"pattern": "1", "destination": "a", "from": "everyone"},
            "dial plan rule 1: from: must be Any, ext:<ids>, line:<names> or num:<pattern>, "
            "got 'everyone'",
        ),
        (
            {"pattern": "1", "destination": "a", "time_condition": "Mon 25:00-26:00"},
            "dial plan rule 1: time_condition: invalid time '25:00'",
        ),
        (
            {"name": " spaced ", "pattern": "1", "destination": "a", "ring_time": 0},
            "dial plan rule 1 ('spaced'): ring_time: must be between 1 and 3600 seconds, got 0",
        ),
        (
            {"pattern": "1", "destination": ""},
            "dial plan rule 1: destination: must not be empty",
        ),
        (
            {"pattern": "1", "destination": "next"},
            "dial plan rule 1: destination: Next is not a destination",
        ),
        (
            {"pattern": "1", "destination": "a", "add_prefix": "+36 1"},
            "dial plan rule 1: add_prefix: must be at most 32 of the characters 0-9 + * #, "
            "got '+36 1'",
        ),
    ],
)
def test_toml_errors(entry: dict[str, object], message: str) -> None:
    with pytest.raises(DialPlanError) as info:
        rules_from_toml([entry])
    assert str(info.value) == message


def test_toml_error_names_the_rules_position() -> None:
    good = {"pattern": "1", "destination": "a"}
    with pytest.raises(DialPlanError) as info:
        rules_from_toml([good, good, {"name": "third", "pattern": "[", "destination": "a"}])
    assert str(info.value) == (
        "dial plan rule 3 ('third'): pattern: pattern '[': unclosed '[' at position 1"
    )
    with pytest.raises(DialPlanError) as info:
        rules_from_toml([good, ["not", "a", "table"]])  # type: ignore[list-item]
    assert str(info.value) == "dial plan rule 2: must be a table, got list"


# --- From text form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match", "canonical"),
    [
        ("Any", ANY_CALLER, "Any"),
        ("any", ANY_CALLER, "Any"),
        ("", ANY_CALLER, "Any"),
        ("ext:1000", FromExtensions(("1000",)), "ext:1000"),
        ("EXT: 1000 , 1001", FromExtensions(("1000", "1001")), "ext:1000,1001"),
        ("line:voipservice1", FromLines(("voipservice1",)), "line:voipservice1"),
        ("Line:a,b", FromLines(("a", "b")), "line:a,b"),
        ("num:+36.", FromNumber(NumberPattern.compile("+36.")), "num:+36."),
        (
            "num: re:\\+36\\d+",
            FromNumber(NumberPattern.compile("re:\\+36\\d+")),
            "num:re:\\+36\\d+",
        ),
    ],
)
def test_from_text(text: str, match: object, canonical: str) -> None:
    parsed = parse_caller_match(text)
    assert parsed == match
    assert format_caller_match(parsed) == canonical
    assert parse_caller_match(canonical) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1000", "must be Any, ext:<ids>, line:<names> or num:<pattern>, got '1000'"),
        ("user:1000", "must be Any, ext:<ids>, line:<names> or num:<pattern>, got 'user:1000'"),
        ("ext:", "empty name in 'ext:'"),
        ("ext:1000,,1001", "empty name in 'ext:1000,,1001'"),
        ("line:a,a", "duplicate name in 'line:a,a'"),
        ("num:", "pattern is empty"),
        ("num:1a", "pattern '1a': invalid character 'a' at position 2"),
    ],
)
def test_from_text_errors(text: str, message: str) -> None:
    with pytest.raises(DialPlanError) as info:
        parse_caller_match(text)
    assert str(info.value) == message


# --- text fields ---------------------------------------------------------------------------

FULL = Rule(
    order=20,
    name="out",
    kind=Kind.CALL,
    from_=FromExtensions(("1000", "1001")),
    pattern=NumberPattern.compile("00."),
    destination="voipservice1",
    strip_digits=2,
    add_prefix="+",
    caller_id="3612222222",
    ring_time=45,
    on_busy=NEXT,
    on_no_answer="voicemail",
    on_error="voipservice2",
    time_condition=TimeCondition.parse("Mon-Fri 08:00-17:00 Europe/Budapest"),
)


def test_rule_to_fields() -> None:
    assert rule_to_fields(FULL) == {
        "Order": "20",
        "Enabled": "true",
        "Name": "out",
        "Kind": "Call",
        "From": "ext:1000,1001",
        "Pattern": "00.",
        "Destination": "voipservice1",
        "StripDigits": "2",
        "AddPrefix": "+",
        "CallerId": "3612222222",
        "RingTime": "45",
        "OnBusy": "Next",
        "OnNoAnswer": "voicemail",
        "OnNotFound": "",
        "OnError": "voipservice2",
        "TimeCondition": "Mon-Fri 08:00-17:00 Europe/Budapest",
    }
    assert tuple(rule_to_fields(FULL)) == FIELD_NAMES


def test_minimal_rule_to_fields() -> None:
    plain = Rule(order=1, pattern=NumberPattern.compile("1001"), destination="1001")
    assert rule_to_fields(plain) == {
        "Order": "1",
        "Enabled": "true",
        "Name": "",
        "Kind": "Call",
        "From": "Any",
        "Pattern": "1001",
        "Destination": "1001",
        "StripDigits": "0",
        "AddPrefix": "",
        "CallerId": "",
        "RingTime": "90",
        "OnBusy": "",
        "OnNoAnswer": "",
        "OnNotFound": "",
        "OnError": "",
        "TimeCondition": "",
    }
    assert rule_from_fields(rule_to_fields(plain)) == plain


def test_fields_round_trip() -> None:
    assert rule_from_fields(rule_to_fields(FULL)) == FULL


def test_fields_minimal_and_lenient_spelling() -> None:
    rule = rule_from_fields(
        {
            "order": " 3 ",
            "PATTERN": "1XXX",
            "destination": "ring1",
            "enabled": "FALSE",
            "kind": "email",
            "onbusy": "NEXT",
            "CallerId": "  ",
        }
    )
    assert rule == Rule(
        order=3,
        pattern=NumberPattern.compile("1XXX"),
        destination="ring1",
        enabled=False,
        kind=Kind.EMAIL,
        on_busy=NEXT,
    )


def test_fields_default_order() -> None:
    fields = {"Pattern": "1", "Destination": "a"}
    assert rule_from_fields(fields, default_order=7).order == 7
    assert rule_from_fields(fields | {"Order": ""}, default_order=7).order == 7
    assert rule_from_fields(fields | {"Order": "2"}, default_order=7).order == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Foo": "1"}, "unknown field 'Foo'"),
        ({"From_": "Any"}, "unknown field 'From_'"),
        ({"Order": "1", "order": "2"}, "field Order given twice ('Order' and 'order')"),
        ({"Destination": "a", "Order": "1"}, "missing field Pattern"),
        ({"Pattern": "1", "Order": "1"}, "missing field Destination"),
        ({"Pattern": "1", "Destination": "a"}, "missing field Order"),
        ({"Pattern": "", "Destination": "a", "Order": "1"}, "Pattern: pattern is empty"),
        ({"Pattern": "1", "Destination": " ", "Order": "1"}, "Destination: must not be empty"),
        ({"Pattern": "1", "Destination": "a", "Order": "x"}, "Order: must be an integer, got 'x'"),
        (
            {"Pattern": "1", "Destination": "a", "Order": "-1"},
            "Order: must not be negative, got -1",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "RingTime": "1.5"},
            "RingTime: must be an integer, got '1.5'",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "RingTime": "0"},
            "RingTime: must be between 1 and 3600 seconds, got 0",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "StripDigits": "99"},
            "StripDigits: must be between 0 and 64, got 99",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "Enabled": "yes"},
            "Enabled: must be true or false, got 'yes'",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "Kind": "Fax"},
            "Kind: must be Call, SMS or Email, got 'Fax'",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "From": "ext:"},
            "From: empty name in 'ext:'",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "TimeCondition": "Mars/Base"},
            "TimeCondition: unknown time zone 'Mars/Base'",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "CallerId": "a\tb"},
            "CallerId: must not contain control characters",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "OnError": "x\x7f"},
            "OnError: must not contain control characters",
        ),
        (
            {"Pattern": "1", "Destination": "a", "Order": "1", "AddPrefix": "0x"},
            "AddPrefix: must be at most 32 of the characters 0-9 + * #, got '0x'",
        ),
        (
            {"Pattern": "re:(a+)+", "Destination": "a", "Order": "1"},
            "Pattern: pattern 're:(a+)+': nested repetition in the regular expression "
            "(catastrophic backtracking)",
        ),
    ],
)
def test_fields_errors(fields: dict[str, str], message: str) -> None:
    with pytest.raises(DialPlanError) as info:
        rule_from_fields(fields)
    assert str(info.value) == message


_DESTINATIONS = st.sampled_from(["1000", "voipservice1", "ring group 1", "voicemail"])
_FALLBACK = st.sampled_from([None, NEXT, "1000", "voicemail"])


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    values: dict[str, Any] = {
        "order": draw(st.integers(0, 10_000)),
        "enabled": draw(st.booleans()),
        "name": draw(st.sampled_from(["", "office", "to mobiles"])),
        "kind": draw(st.sampled_from(list(Kind))),
        "from_": parse_caller_match(
            draw(st.sampled_from(["Any", "ext:1000,1001", "line:voipservice1", "num:+36."]))
        ),
        "pattern": NumberPattern.compile(
            draw(st.sampled_from(["1001", "0.", "[1-5]X!", "re:\\d+", "*7#"]))
        ),
        "destination": draw(_DESTINATIONS),
        "strip_digits": draw(st.integers(0, 64)),
        "add_prefix": draw(st.sampled_from(["", "+36", "#"])),
        "caller_id": draw(st.sampled_from([None, "3612222222", "Reception"])),
        "ring_time": draw(st.integers(1, 3600)),
        "on_busy": draw(_FALLBACK),
        "on_no_answer": draw(_FALLBACK),
        "on_not_found": draw(_FALLBACK),
        "on_error": draw(_FALLBACK),
        "time_condition": draw(
            st.sampled_from([None, "Mon-Fri 08:00-17:00 Europe/Budapest", "Sat 22:00-06:00"])
        ),
    }
    if values["time_condition"] is not None:
        values["time_condition"] = TimeCondition.parse(values["time_condition"])
    return Rule(**values)


@settings(max_examples=100, deadline=None)
@given(rules())
def test_fields_round_trip_property(rule: Rule) -> None:
    fields = rule_to_fields(rule)
    assert set(fields) == set(FIELD_NAMES)
    assert all(isinstance(value, str) for value in fields.values())
    assert rule_from_fields(fields) == rule


@settings(max_examples=100, deadline=None)
@given(rules())
def test_toml_round_trip_property(rule: Rule) -> None:
    """rule_to_fields renamed to TOML keys (and typed) loads back to the same rule."""
    fields = rule_to_fields(rule)
    entry: dict[str, object] = {}
    for pascal, value in fields.items():
        key = "".join("_" + ch.lower() if ch.isupper() else ch for ch in pascal).lstrip("_")
        if key in ("order", "strip_digits", "ring_time"):
            entry[key] = int(value)
        elif key == "enabled":
            entry[key] = value == "true"
        else:
            entry[key] = value
    assert rules_from_toml([entry]) == [rule]
