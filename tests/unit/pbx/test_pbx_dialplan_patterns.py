"""Dialled-number patterns and number normalisation (spec 9.2, 8.2)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.pbx.dialplan_patterns import (
    MAX_NUMBER_LENGTH,
    DialPlanError,
    NumberPattern,
    normalise_number,
)


def matches(pattern: str, number: str) -> bool:
    return NumberPattern.compile(pattern).match(number)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1001", "1001"),
        ("+36 1 111 111", "+361111111"),
        ("+36-(1)-111.111", "+361111111"),
        ("(06) 30 123-4567", "06301234567"),
        ("\t*72 # ", "*72#"),
        ("alice", "alice"),
        ("", ""),
        ("0036/1", "0036/1"),  # only the listed separators go
    ],
)
def test_normalise_number(raw: str, normal: str) -> None:
    assert normalise_number(raw) == normal


@pytest.mark.parametrize(
    ("pattern", "number", "expected"),
    [
        # exact
        ("1001", "1001", True),
        ("1001", "10010", False),
        ("1001", "100", False),
        ("1001", "", False),
        ("+361111111", "+36 1 111 111", True),
        ("361111111", "+361111111", False),
        # X: 0-9
        ("1X", "10", True),
        ("1X", "19", True),
        ("1X", "1", False),
        ("1X", "1*", False),
        ("1x", "15", True),
        # Z: 1-9
        ("Z", "0", False),
        ("Z", "1", True),
        ("Z", "9", True),
        ("z", "5", True),
        # N: 2-9
        ("N", "1", False),
        ("N", "2", True),
        ("N", "9", True),
        ("nXX", "200", True),
        ("NXX", "199", False),
        # sets
        ("[1-5]", "1", True),
        ("[1-5]", "5", True),
        ("[1-5]", "6", False),
        ("[1-5]", "0", False),
        ("[13579]", "7", True),
        ("[13579]", "8", False),
        ("[0-26-8]", "7", True),
        ("[0-26-8]", "4", False),
        ("[*#]1", "#1", True),
        ("[5-5]", "5", True),
        ("9[1-3]X", "925", True),
        # . one or more further characters
        ("0.", "0", False),
        ("0.", "01", True),
        ("0.", "0123456789", True),
        ("0.", "10", False),
        (".", "", False),
        (".", "x", True),
        ("00.", "+36", False),
        # ! zero or more further characters
        ("0!", "0", True),
        ("0!", "01", True),
        ("0!", "1", False),
        ("!", "", True),
        ("!", "anything", True),
        ("NXX!", "20", False),
        # literals
        ("*72", "*72", True),
        ("*72", "72", False),
        ("#31#", "#31#", True),
        ("*X#", "*5#", True),
        ("+36.", "+36 20 123 4567", True),
        ("+36.", "0036201234567", False),
        ("00+", "00+", True),
    ],
)
def test_wildcards(pattern: str, number: str, expected: bool) -> None:
    assert matches(pattern, number) is expected


@pytest.mark.parametrize(
    ("pattern", "number", "expected"),
    [
        (r"re:\+36\d{8,9}", "+36 20 123 4567", True),
        (r"re:\+36\d{8,9}", "+36 1 111 111", False),
        (r"re:(00|\+)36.*", "0036 1", True),
        (r"re:(00|\+)36.*", "+361", True),
        (r"re:(00|\+)36.*", "036", False),
        (r"re:1\d\d", "1001", False),  # full match, not search
        (r"re:1\d\d", "100", True),
        (r"RE:1\d\d", "100", True),
        (r"re:(?P<cc>\+36)?\d+", "123", True),
        (r"re:(?i)alice", "ALICE", True),
        (r"re:[a-z]+", "bob", True),
        (r"re:\d*", "1" * MAX_NUMBER_LENGTH, True),
        (r"re:\d*", "1" * (MAX_NUMBER_LENGTH + 1), False),  # too long for a regex
    ],
)
def test_regex(pattern: str, number: str, expected: bool) -> None:
    assert matches(pattern, number) is expected


def test_pattern_text_and_equality() -> None:
    pattern = NumberPattern.compile("  0.  ")
    assert pattern.text == "0."
    assert str(pattern) == "0."
    assert pattern == NumberPattern.compile("0.")
    assert pattern != NumberPattern.compile("0!")
    assert hash(pattern) == hash(NumberPattern("0."))
    assert not pattern.is_regex
    assert NumberPattern.compile(r"re:\d+").is_regex


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "pattern is empty"),
        ("   ", "pattern is empty"),
        ("1" * 65, "pattern '" + "1" * 65 + "': longer than 64 characters"),
        ("12a", "pattern '12a': invalid character 'a' at position 3"),
        ("_0.", "pattern '_0.': invalid character '_' at position 1"),
        ("1 2", "pattern '1 2': invalid character ' ' at position 2"),
        ("0.1", "pattern '0.1': '.' must be the last character"),
        ("0!!", "pattern '0!!': '!' must be the last character"),
        ("..", "pattern '..': '.' must be the last character"),
        ("1[2", "pattern '1[2': unclosed '[' at position 2"),
        ("1[]", "pattern '1[]': empty set at position 2"),
        ("[5-1]", "pattern '[5-1]': invalid range '5-1' in the set at position 1"),
        ("[1-]", "pattern '[1-]': invalid range '1-' in the set at position 1"),
        ("[-1]", "pattern '[-1]': invalid character '-' in the set at position 1"),
        ("[1-a]", "pattern '[1-a]': invalid range '1-a' in the set at position 1"),
        ("[X]", "pattern '[X]': invalid character 'X' in the set at position 1"),
        ("[1[2]", "pattern '[1[2]': invalid character '[' in the set at position 1"),
        ("1]", "pattern '1]': invalid character ']' at position 2"),
        ("re:", "pattern 're:': the regular expression is empty"),
        (
            "re:(",
            "pattern 're:(': invalid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        ("re:*1", "pattern 're:*1': invalid regular expression: nothing to repeat at position 0"),
        (
            "re:" + "1" * 129,
            "pattern 're:" + "1" * 129 + "': the regular expression is longer than 128 characters",
        ),
    ],
)
def test_pattern_errors(pattern: str, message: str) -> None:
    with pytest.raises(DialPlanError) as info:
        NumberPattern.compile(pattern)
    assert str(info.value) == message


NESTED = "nested repetition in the regular expression (catastrophic backtracking)"
TOO_COMPLEX = "too many repetitions or alternatives in the regular expression"


@pytest.mark.parametrize(
    ("regex", "problem"),
    [
        (r"(a+)+", NESTED),
        (r"(a*)*b", NESTED),
        (r"(\d+){2,}", NESTED),
        (r"(0|00)*", NESTED),
        (r"((\d+))+", NESTED),
        (r"(?:\d|\d\d)+x", NESTED),
        (r"\d*\d*\d*", TOO_COMPLEX),
        (r"(\d+){4}", TOO_COMPLEX),
        (r"(1|1){30}", TOO_COMPLEX),
        ("(1|1)" * 17, TOO_COMPLEX),
        ("(0|1)" * 11 + r"\d+", TOO_COMPLEX),
    ],
)
def test_catastrophic_regexes_refused(regex: str, problem: str) -> None:
    with pytest.raises(DialPlanError) as info:
        NumberPattern.compile("re:" + regex)
    assert str(info.value) == f"pattern {'re:' + regex!r}: {problem}"


@pytest.mark.parametrize(
    "regex",
    [
        r"\+36(1|20|30|70)\d{7}",
        r"(00|\+)36\d+",
        r"(?:\+36)?\d*",
        r"\d*\d*x",
        r"(\d{3}-)?\d{4}",
        r"\d{1000}",
        r"(\d+)?x",
        r"(?P<cc>00|\+)(?P=cc)",
        r"(?#comment)\d+",
        r"[(|)+*]+",
        r"\(+\)",
        r"a{,2}",
        r"a{x}",
        "(1|1)" * 16 + "x",
        "(0|1)" * 10 + r"\d+",
    ],
)
def test_reasonable_regexes_accepted_and_fast(regex: str) -> None:
    pattern = NumberPattern.compile("re:" + regex)
    started = time.perf_counter()
    for number in ("1" * MAX_NUMBER_LENGTH, "1" * 40 + "y", "+36" + "1" * 60):
        pattern.match(number)
    assert time.perf_counter() - started < 1.0


# --- hypothesis: the matcher against an independent regex translation ---------------------

_ATOMS = st.sampled_from(
    [
        *"0123456789*#+",
        "X",
        "x",
        "Z",
        "N",
        "n",
        "[1-5]",
        "[13579]",
        "[0-27-9]",
        "[*#]",
        "[0+]",
    ]
)
_PATTERNS = (
    st.tuples(st.lists(_ATOMS, max_size=6), st.sampled_from(["", ".", "!"]))
    .map(lambda parts: "".join(parts[0]) + parts[1])
    .filter(bool)
)
_NUMBERS = st.text(alphabet="0123456789*#+ -.()a", max_size=10)


def reference_regex(pattern: str) -> str:
    """Translate the wildcard syntax into a regex, the obvious (slow) way."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in "Xx":
            out.append("[0-9]")
        elif ch in "Zz":
            out.append("[1-9]")
        elif ch in "Nn":
            out.append("[2-9]")
        elif ch == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end].replace("*", r"\*").replace("+", r"\+")
            out.append(f"[{body}]")
            i = end
        elif ch == ".":
            out.append(".+")
        elif ch == "!":
            out.append(".*")
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@settings(max_examples=250, deadline=None)
@given(_PATTERNS, _NUMBERS)
def test_matcher_agrees_with_reference_regex(pattern: str, number: str) -> None:
    expected = re.fullmatch(reference_regex(pattern), normalise_number(number), re.DOTALL)
    assert NumberPattern.compile(pattern).match(number) is (expected is not None)


@settings(max_examples=100, deadline=None)
@given(_PATTERNS, st.text(alphabet="0123456789*#+", max_size=8), st.data())
def test_separators_never_change_a_match(pattern: str, number: str, data: st.DataObject) -> None:
    noisy = "".join(ch + data.draw(st.sampled_from(["", " ", "-", ".", "(", ")"])) for ch in number)
    compiled = NumberPattern.compile(pattern)
    assert compiled.match(noisy) is compiled.match(number)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=10))
def test_a_number_matches_itself_exactly(number: str) -> None:
    assert NumberPattern.compile(number).match(number)
    assert not NumberPattern.compile(number).match(number + "0")
    assert NumberPattern.compile(number + "!").match(number)
    assert not NumberPattern.compile(number + ".").match(number)
