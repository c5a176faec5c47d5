"""Strict decoding of query strings and bodies, and the lookup rules of spec 2.4/2.5."""

from __future__ import annotations

import pytest

from pypbx.api.params import Params, ParamsParseError, first_occurrences, parse_urlencoded


@pytest.mark.parametrize(
    ("raw", "pairs"),
    [
        ("command=Call&dialed=103", [("command", "Call"), ("dialed", "103")]),
        ("CallerDisplayName=John+Smith", [("CallerDisplayName", "John Smith")]),
        ("Sender=%2b061554669", [("Sender", "+061554669")]),
        ("Sender=%2B061554669", [("Sender", "+061554669")]),
        (
            "Url=http%3a%2f%2fxyz.com%2fcall_connected.php",
            [("Url", "http://xyz.com/call_connected.php")],
        ),
        ("Keys=01234%23", [("Keys", "01234#")]),
        ("Text=%C3%A9t%C3%A9", [("Text", "été")]),
        ("Phone+number=101", [("Phone number", "101")]),
        ("flag", [("flag", "")]),
        ("&&a=1&", [("a", "1")]),
        ("a=b=c", [("a", "b=c")]),
        ("", []),
        ("General=+", [("General", " ")]),
    ],
)
def test_parse_urlencoded(raw: str, pairs: list[tuple[str, str]]) -> None:
    assert parse_urlencoded(raw) == pairs


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a=%zz", "malformed percent-encoding"),
        ("a=%4", "malformed percent-encoding"),
        ("a=%", "malformed percent-encoding"),
        ("a%=1", "malformed percent-encoding"),
        ("a=100%", "malformed percent-encoding"),
        ("a=%FF", "invalid UTF-8 in request"),
        ("a=%C3", "invalid UTF-8 in request"),
        ("a=%C3%28", "invalid UTF-8 in request"),
        ("a=%ED%A0%80", "invalid UTF-8 in request"),  # an encoded surrogate
        ("%FF=1", "invalid UTF-8 in request"),
    ],
)
def test_parse_urlencoded_rejects(raw: str, reason: str) -> None:
    with pytest.raises(ParamsParseError) as info:
        parse_urlencoded(raw)
    assert str(info.value) == reason


def test_first_occurrence_wins_after_case_folding() -> None:
    pairs = [("CallId", "first"), ("callid", "second"), ("CALLID", "third")]
    assert first_occurrences(pairs) == {"callid": "first"}


def test_blank_values_are_absent_and_do_not_shadow() -> None:
    pairs = [("From", ""), ("General", " "), ("Source", "\t"), ("From", "2013-01-17")]
    assert first_occurrences(pairs) == {"from": "2013-01-17"}


def test_names_are_trimmed_values_are_not() -> None:
    assert first_occurrences([(" ZoneNumber", "10"), ("Text", " hi ")]) == {
        "zonenumber": "10",
        "text": " hi ",
    }


def test_params_body_wins_and_aliases_in_order() -> None:
    params = Params({"callid": "fromquery", "dialled": "103"}, {"callid": "frombody"})
    assert params.get("CallId") == "frombody"
    assert params.get("Dialed", "Dialled") == "103"
    assert params.get("Missing") is None
    assert "CALLID" in params
    assert "other" not in params


def test_params_canonical_name_beats_alias() -> None:
    params = Params({"dialled": "1", "dialed": "2"})
    assert params.get("Dialed", "Dialled") == "2"
