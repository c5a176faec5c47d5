"""RFC 4028 session timers, sans-I/O: header vectors, UAS/UAC decisions, deadlines."""

from __future__ import annotations

import pytest

from pypbx.sip.message import Headers
from pypbx.sip.session_timer import (
    Accept,
    Policy,
    SessionExpires,
    SessionTimer,
    SessionTimerError,
    TimerHeaders,
    TooSmall,
    allows_method,
    answer_request,
    negotiated,
    option_tags,
    parse_min_se,
    request_headers,
    retry_interval,
    unsupported,
)

# ------------------------------------------------------------------ Session-Expires / Min-SE


@pytest.mark.parametrize(
    ("text", "interval", "refresher"),
    [
        ("1800", 1800, None),
        (" 90 ", 90, None),
        ("1800;refresher=uac", 1800, "uac"),
        ("1800 ; refresher = UAS", 1800, "uas"),
        ("600;foo=bar;refresher=uas", 600, "uas"),
        ("600;lr", 600, None),
        ("99999999999", 2**31 - 1, None),
    ],
)
def test_session_expires_parses(text: str, interval: int, refresher: str | None) -> None:
    value = SessionExpires.parse(text)
    assert (value.interval, value.refresher) == (interval, refresher)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Bad Session-Expires: '' is not delta-seconds"),
        ("abc", "Bad Session-Expires: 'abc' is not delta-seconds"),
        ("-5", "Bad Session-Expires: '-5' is not delta-seconds"),
        ("1.5", "Bad Session-Expires: '1.5' is not delta-seconds"),
        ("٣٠", "Bad Session-Expires: '٣٠' is not delta-seconds"),
        ("0", "Bad Session-Expires: the interval must be at least 1 s"),
        ("90;refresher=both", "Bad Session-Expires: refresher 'both'"),
        ("90;refresher", "Bad Session-Expires: refresher ''"),
    ],
)
def test_session_expires_rejects(text: str, message: str) -> None:
    with pytest.raises(SessionTimerError) as info:
        SessionExpires.parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "value", [SessionExpires(90), SessionExpires(1800, "uac"), SessionExpires(7, "uas")]
)
def test_session_expires_round_trip(value: SessionExpires) -> None:
    assert SessionExpires.parse(str(value)) == value


def test_session_expires_serialises() -> None:
    assert str(SessionExpires(1800, "uac")) == "1800;refresher=uac"
    assert str(SessionExpires(90)) == "90"


def test_min_se() -> None:
    assert parse_min_se("90") == 90
    assert parse_min_se(" 120;x=y") == 120
    with pytest.raises(SessionTimerError, match=r"^Bad Min-SE: 'x' is not delta-seconds$"):
        parse_min_se("x")


# ------------------------------------------------------------------ option tags, Allow


def test_option_tags_and_unsupported() -> None:
    assert option_tags(["timer, 100rel", "Replaces", " ,"]) == ["timer", "100rel", "replaces"]
    assert unsupported(["timer"]) == []
    assert unsupported(["TIMER, 100rel", "precondition"]) == ["100rel", "precondition"]
    assert unsupported([]) == []


def test_allows_method() -> None:
    assert allows_method(Headers([("Allow", "INVITE, ACK, update")]), "UPDATE")
    assert allows_method(Headers([("Allow", "INVITE"), ("Allow", "UPDATE")]), "UPDATE")
    assert not allows_method(Headers([("Allow", "INVITE, ACK, BYE")]), "UPDATE")
    assert not allows_method(Headers(), "UPDATE")


def test_timer_headers_read() -> None:
    headers = Headers(
        [("x", "300;refresher=uac"), ("Min-SE", "120"), ("k", "100rel, timer")]  # compact forms
    )
    assert TimerHeaders.read(headers) == TimerHeaders(
        SessionExpires(300, "uac"), 120, supported=True, required=False
    )
    required = TimerHeaders.read(Headers([("Require", "timer")]))
    assert (required.supported, required.required) == (True, True)
    assert TimerHeaders.read(Headers()) == TimerHeaders()
    with pytest.raises(SessionTimerError, match="Bad Min-SE"):
        TimerHeaders.read(Headers([("Min-SE", "soon")]))


# ------------------------------------------------------------------ UAS decisions

POLICY = Policy(session_expires=1800, min_se=90)


@pytest.mark.parametrize(
    ("request_", "decision"),
    [
        # asked and supported, no refresher: the phone refreshes
        (
            TimerHeaders(SessionExpires(600), supported=True),
            Accept(SessionExpires(600, "uac"), require=True),
        ),
        # the refresher the phone named is kept
        (
            TimerHeaders(SessionExpires(600, "uas"), supported=True),
            Accept(SessionExpires(600, "uas"), require=True),
        ),
        # inserted by a proxy for a phone without timer support: we must refresh
        (
            TimerHeaders(SessionExpires(600, "uac")),
            Accept(SessionExpires(600, "uas"), require=False),
        ),
        # exactly our minimum is fine; below it is 422
        (
            TimerHeaders(SessionExpires(90), supported=True),
            Accept(SessionExpires(90, "uac"), require=True),
        ),
        (TimerHeaders(SessionExpires(89), supported=True), TooSmall(90)),
        (TimerHeaders(SessionExpires(30)), TooSmall(90)),
        # supported but not asked: our interval, never below the phone's Min-SE
        (TimerHeaders(supported=True), Accept(SessionExpires(1800, "uac"), require=True)),
        (
            TimerHeaders(min_se=3600, supported=True),
            Accept(SessionExpires(3600, "uac"), require=True),
        ),
        # neither: no timer
        (TimerHeaders(), Accept(None, require=False)),
        (TimerHeaders(min_se=120), Accept(None, require=False)),
    ],
)
def test_answer_request(request_: TimerHeaders, decision: Accept | TooSmall) -> None:
    assert answer_request(request_, POLICY) == decision


def test_answer_request_when_we_never_ask() -> None:
    quiet = Policy(session_expires=0, min_se=90)
    assert answer_request(TimerHeaders(supported=True), quiet) == Accept(None, require=False)
    # a phone that asks is still honoured
    assert answer_request(TimerHeaders(SessionExpires(300), supported=True), quiet) == Accept(
        SessionExpires(300, "uac"), require=True
    )


def test_answer_request_with_a_test_sized_minimum() -> None:
    short = Policy(session_expires=6, min_se=2)
    assert answer_request(TimerHeaders(SessionExpires(2), supported=True), short) == Accept(
        SessionExpires(2, "uac"), require=True
    )
    assert answer_request(TimerHeaders(SessionExpires(1), supported=True), short) == TooSmall(2)


# ------------------------------------------------------------------ UAC side


def test_request_headers() -> None:
    assert request_headers(1800, 90, refresher=None) == [
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("Min-SE", "90"),
    ]
    # a refresh keeps us the refresher; Min-SE never above the interval
    assert request_headers(60, 90, refresher="uac") == [
        ("Supported", "timer"),
        ("Session-Expires", "60;refresher=uac"),
        ("Min-SE", "60"),
    ]


@pytest.mark.parametrize(
    ("current", "min_se", "expected"),
    [
        (90, 300, 300),
        (0, 90, 90),  # we asked for nothing, the callee insists
        (300, 300, None),  # no increase: retrying would loop
        (300, 200, None),
        (90, None, None),  # a 422 without Min-SE
        (90, 86401, None),  # beyond a day
    ],
)
def test_retry_interval(current: int, min_se: int | None, expected: int | None) -> None:
    assert retry_interval(current, TimerHeaders(min_se=min_se)) == expected


@pytest.mark.parametrize(
    ("header", "we_sent", "we_refresh"),
    [
        (SessionExpires(100, "uac"), True, True),
        (SessionExpires(100, "uas"), True, False),
        (SessionExpires(100, "uac"), False, False),
        (SessionExpires(100, "uas"), False, True),
        (SessionExpires(100), True, True),  # a 2xx without refresher: we refresh
        (SessionExpires(100), False, True),
    ],
)
def test_negotiated_roles(header: SessionExpires, we_sent: bool, we_refresh: bool) -> None:
    timer = negotiated(header, we_sent_request=we_sent, now=10.0)
    assert timer == SessionTimer(100, we_refresh, 10.0)


def test_negotiated_without_header_is_no_timer() -> None:
    assert negotiated(None, we_sent_request=True, now=0.0) is None


# ------------------------------------------------------------------ deadlines


def test_refresher_refreshes_at_half_the_interval() -> None:
    timer = SessionTimer(1800, we_refresh=True, refreshed_at=1000.0)
    assert timer.deadline == 1900.0
    assert timer.due(1899.9) is None
    assert timer.due(1900.0) == "refresh"
    timer.refreshed(1905.0)
    assert timer.deadline == 2805.0


@pytest.mark.parametrize(
    ("interval", "deadline"),
    [
        (1800, 1800 - 32),  # min(32, 600) = 32
        (90, 90 - 30),  # min(32, 30) = 30
        (96, 96 - 32),
        (6, 4.0),  # min(32, 2) = 2
        (3, 2.0),
    ],
)
def test_non_refresher_gives_up_before_expiry(interval: int, deadline: float) -> None:
    timer = SessionTimer(interval, we_refresh=False, refreshed_at=0.0)
    assert timer.deadline == pytest.approx(deadline)
    assert timer.expires_at == interval
    assert timer.due(deadline - 0.01) is None
    assert timer.due(deadline) == "expire"


def test_peer_refresh_arrives_before_the_deadline() -> None:
    """The refresher's half-interval always falls before the other side's deadline."""
    for interval in (2, 3, 90, 100, 1800, 7200):
        ours = SessionTimer(interval, we_refresh=True, refreshed_at=0.0)
        theirs = SessionTimer(interval, we_refresh=False, refreshed_at=0.0)
        assert ours.deadline < theirs.deadline < theirs.expires_at
