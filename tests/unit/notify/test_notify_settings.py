"""NotifySettings: spec defaults, validation messages, backoff schedule."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pypbx import __version__
from pypbx.notify import NotifySettings


def test_defaults_follow_the_spec() -> None:
    s = NotifySettings()
    assert (s.timeout, s.retries, s.retry_delay, s.max_redirects) == (10.0, 1, 2.0, 5)
    assert s.secret is None
    assert s.user_agent == f"pypbx/{__version__}" == "pypbx/0.1.0"
    assert s.max_reply_bytes == 1024 * 1024
    assert (s.max_in_flight, s.max_queue) == (100, 10_000)


def test_is_frozen() -> None:
    s = NotifySettings()
    with pytest.raises(AttributeError):
        s.timeout = 1.0  # type: ignore[misc]


def test_backoff_doubles_from_retry_delay() -> None:
    s = NotifySettings(retry_delay=2.0)
    assert [s.backoff(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert NotifySettings(retry_delay=0).backoff(3) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be positive, got 0"),
        ({"timeout": -1.5}, "timeout must be positive, got -1.5"),
        ({"timeout": math.nan}, "timeout must be positive, got nan"),
        ({"retries": -1}, "retries must not be negative, got -1"),
        ({"retry_delay": -0.1}, "retry_delay must not be negative, got -0.1"),
        ({"secret": ""}, "secret must not be empty (use None to disable signing)"),
        ({"user_agent": ""}, "user_agent must be a non-empty header value, got ''"),
        (
            {"user_agent": "x\r\nX-Evil: 1"},
            "user_agent must be a non-empty header value, got 'x\\r\\nX-Evil: 1'",
        ),
        ({"max_redirects": -1}, "max_redirects must not be negative, got -1"),
        ({"max_reply_bytes": 0}, "max_reply_bytes must be positive, got 0"),
        ({"max_in_flight": 0}, "max_in_flight must be positive, got 0"),
        ({"max_queue": 0}, "max_queue must be positive, got 0"),
    ],
)
def test_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        NotifySettings(**kwargs)
    assert str(info.value) == message


def test_accepts_edge_values() -> None:
    s = NotifySettings(retries=0, retry_delay=0, max_redirects=0, max_reply_bytes=1, secret="k")
    assert s.retries == 0 and s.max_redirects == 0
