"""Parameter validators (spec section 0 types)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pypbx.api import validators as v


@pytest.mark.parametrize(
    "value", ["1000", "+062554670", "0012", "101@localhost", "*97#", "a.b-c_d"]
)
def test_number_string_accepts(value: str) -> None:
    assert v.number_string(value) == value


@pytest.mark.parametrize("value", ["10 00", "1000;x", "<1>", "é", "1" * 129])
def test_number_string_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.number_string(value)


def test_call_id_is_opaque_but_bounded() -> None:
    assert v.call_id("XzeOK") == "XzeOK"
    assert v.call_id("x" * 64) == "x" * 64
    with pytest.raises(ValueError):
        v.call_id("x" * 65)


def test_choice_and_party() -> None:
    assert v.party("CALLER") == "caller"
    assert v.party("All") == "all"
    assert v.transferor_party("callee") == "callee"
    with pytest.raises(ValueError):
        v.transferor_party("all")
    with pytest.raises(ValueError):
        v.party("nobody")


def test_boolean() -> None:
    assert v.boolean("TRUE") is True
    assert v.boolean("false") is False
    with pytest.raises(ValueError):
        v.boolean("yes")


def test_integer_and_digits() -> None:
    assert v.integer(minimum=1)("120") == 120
    for bad in ("0", "-1", "1.5", "x", "١٢"):
        with pytest.raises(ValueError):
            v.integer(minimum=1)(bad)
    assert v.digits(4, min_length=4)("1234") == "1234"
    for bad in ("123", "12345", "12a4"):
        with pytest.raises(ValueError):
            v.digits(4, min_length=4)(bad)


def test_url() -> None:
    assert v.url("http://app.example/connected") == "http://app.example/connected"
    assert v.url("HTTPS://x.example") == "HTTPS://x.example"
    for bad in ("ftp://x", "app.example/x", "http://", "javascript:alert(1)"):
        with pytest.raises(ValueError):
            v.url(bad)


def test_dtmf_and_email() -> None:
    assert v.dtmf_keys("01234#*abcd") == "01234#*ABCD"
    with pytest.raises(ValueError):
        v.dtmf_keys("12E")
    assert v.email_address("abc@another.example") == "abc@another.example"
    for bad in ("abc", "@x", "a@", "a b@x"):
        with pytest.raises(ValueError):
            v.email_address(bad)


def test_timestamp_formats() -> None:
    assert v.timestamp("2013-01-17 13:32:12") == datetime(2013, 1, 17, 13, 32, 12)
    assert v.timestamp("2013-01-17") == datetime(2013, 1, 17)
    assert v.timestamp("2013-01-17T13:32:12+02:00") == datetime(
        2013, 1, 17, 13, 32, 12, tzinfo=timezone(timedelta(hours=2))
    )
    with pytest.raises(ValueError):
        v.timestamp("yesterday")
