"""SIP INFO DTMF bodies: dtmf-relay and dtmf vectors, tolerance, malformed bodies, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypbx.media.dtmf import DIGITS
from pypbx.sip.dtmf_info import (
    DTMF_CONTENT_TYPE,
    DTMF_INFO_CONTENT_TYPES,
    DTMF_RELAY_CONTENT_TYPE,
    DtmfError,
    build_dtmf_relay,
    parse_dtmf,
    parse_dtmf_info,
    parse_dtmf_relay,
)


def test_content_types() -> None:
    assert DTMF_RELAY_CONTENT_TYPE == "application/dtmf-relay"
    assert DTMF_CONTENT_TYPE == "application/dtmf"
    assert sorted(DTMF_INFO_CONTENT_TYPES) == ["application/dtmf", "application/dtmf-relay"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
        (b"Signal=5\r\nDuration=160", ("5", 160)),  # no final line end
        (b"Signal=#\nDuration=250\n", ("#", 250)),  # LF only
        (b"signal = * \r\nduration =  100 \r\n", ("*", 100)),  # case and spacing
        (b"SIGNAL=a\r\n", ("A", None)),  # no Duration; lowercase key
        (b"Duration=80\r\nSignal=D\r\n", ("D", 80)),  # order does not matter
        (b"Signal=10\r\nDuration=100\r\n", ("*", 100)),  # event numbers for * and #
        (b"Signal=11\r\nDuration=100\r\n", ("#", 100)),
        (b"Signal=12\r\n", ("A", None)),
        (b"Signal=15\r\n", ("D", None)),
        (b"Signal=0\r\nDuration=0\r\n", ("0", 0)),
        (b"\r\nSignal=9\r\n\r\nVolume=10\r\nsome junk\r\n", ("9", None)),  # extra lines
    ],
)
def test_parse_dtmf_relay(body: bytes, expected: tuple[str, int | None]) -> None:
    assert parse_dtmf_relay(body) == expected
    assert parse_dtmf_info("application/dtmf-relay", body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "DTMF INFO body is empty"),
        (b" \r\n\r\n", "DTMF INFO body is empty"),
        (b"Duration=160\r\n", "dtmf-relay body has no Signal line"),
        (b"hello", "dtmf-relay body has no Signal line"),
        (b"Signal=\r\n", "invalid DTMF signal '': expected 0-9 * # A-D or an event 0-15"),
        (b"Signal=E\r\n", "invalid DTMF signal 'E': expected 0-9 * # A-D or an event 0-15"),
        (b"Signal=16\r\n", "invalid DTMF signal '16': expected 0-9 * # A-D or an event 0-15"),
        (b"Signal=!\r\n", "invalid DTMF signal '!': expected 0-9 * # A-D or an event 0-15"),
        (b"Signal=55\r\n", "invalid DTMF signal '55': expected 0-9 * # A-D or an event 0-15"),
        (b"Signal=1\r\nSignal=2\r\n", "dtmf-relay body has more than one Signal line"),
        (
            b"Signal=1\r\nDuration=-5\r\n",
            "invalid dtmf-relay Duration '-5': expected 0-60000 milliseconds",
        ),
        (
            b"Signal=1\r\nDuration=1.5\r\n",
            "invalid dtmf-relay Duration '1.5': expected 0-60000 milliseconds",
        ),
        (
            b"Signal=1\r\nDuration=\r\n",
            "invalid dtmf-relay Duration '': expected 0-60000 milliseconds",
        ),
        (
            b"Signal=1\r\nDuration=60001\r\n",
            "invalid dtmf-relay Duration '60001': expected 0-60000 milliseconds",
        ),
        (
            "Signal=1\r\nDuration=\u0663\r\n".encode(),  # an Arabic-Indic three
            "DTMF INFO body is not ASCII text",
        ),
        (b"Signal=1\r\n" + b" " * 1024, "DTMF INFO body too large: 1034 bytes, at most 1024"),
    ],
)
def test_parse_dtmf_relay_errors(body: bytes, message: str) -> None:
    with pytest.raises(DtmfError) as info:
        parse_dtmf_relay(body)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("body", "digit"),
    [(b"5", "5"), (b"#\r\n", "#"), (b" 7 \n", "7"), (b"b", "B"), (b"10", "*"), (b"11", "#")],
)
def test_parse_dtmf(body: bytes, digit: str) -> None:
    assert parse_dtmf(body) == digit
    assert parse_dtmf_info("application/dtmf", body) == (digit, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "DTMF INFO body is empty"),
        (b"x", "invalid DTMF signal 'x': expected 0-9 * # A-D or an event 0-15"),
        (b"5 6", "invalid DTMF signal '5 6': expected 0-9 * # A-D or an event 0-15"),
        (b"\xff", "DTMF INFO body is not ASCII text"),
    ],
)
def test_parse_dtmf_errors(body: bytes, message: str) -> None:
    with pytest.raises(DtmfError, match="^" + message.replace("*", r"\*") + "$"):
        parse_dtmf(body)


def test_content_type_dispatch_ignores_case_and_parameters() -> None:
    assert parse_dtmf_info("Application/DTMF-Relay; charset=x", b"Signal=3") == ("3", None)
    assert parse_dtmf_info(" APPLICATION/DTMF ", b"3") == ("3", None)


def test_dtmf_relay_body_labelled_application_dtmf() -> None:
    assert parse_dtmf_info("application/dtmf", b"Signal=4\r\nDuration=90\r\n") == ("4", 90)


def test_unknown_content_type() -> None:
    with pytest.raises(DtmfError, match=r"^not a DTMF content type: 'application/sdp'$"):
        parse_dtmf_info("application/sdp", b"Signal=1")


def test_build_dtmf_relay() -> None:
    assert build_dtmf_relay("5", 160) == b"Signal=5\r\nDuration=160\r\n"
    assert build_dtmf_relay("#") == b"Signal=#\r\nDuration=250\r\n"
    assert build_dtmf_relay("c", 100) == b"Signal=C\r\nDuration=100\r\n"


@pytest.mark.parametrize(
    ("digit", "duration", "message"),
    [
        ("E", 100, "invalid DTMF digit 'E': expected one of 0-9 * # A-D"),
        ("12", 100, "invalid DTMF digit '12': expected one of 0-9 * # A-D"),
        ("1", 0, "dtmf-relay Duration must be 1-60000 ms, got 0"),
        ("1", 60001, "dtmf-relay Duration must be 1-60000 ms, got 60001"),
    ],
)
def test_build_dtmf_relay_errors(digit: str, duration: int, message: str) -> None:
    with pytest.raises(DtmfError) as info:
        build_dtmf_relay(digit, duration)
    assert str(info.value) == message


@given(st.sampled_from(DIGITS + "abcd"), st.integers(1, 60000))
def test_build_parse_round_trip(digit: str, duration: int) -> None:
    body = build_dtmf_relay(digit, duration)
    assert parse_dtmf_info(DTMF_RELAY_CONTENT_TYPE, body) == (digit.upper(), duration)


@given(st.binary(max_size=200))
def test_arbitrary_bodies_parse_or_raise_dtmf_error(body: bytes) -> None:
    for content_type in DTMF_INFO_CONTENT_TYPES:
        try:
            digit, duration = parse_dtmf_info(content_type, body)
        except DtmfError:
            continue
        assert digit in DIGITS
        assert duration is None or 0 <= duration <= 60000
