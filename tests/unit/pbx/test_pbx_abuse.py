"""Failed-authentication bans: counting in a window, banning, expiry, ignored networks."""

from __future__ import annotations

from pypbx.pbx.abuse import FailureBans


def test_a_source_is_banned_after_the_limit_within_the_window() -> None:
    bans = FailureBans(max_failures=3, window=60.0, ban_seconds=600.0, ignore=())
    for t in (0.0, 10.0):
        bans.failed("203.0.113.7", t)
    assert not bans.banned("203.0.113.7", 11.0)
    bans.failed("203.0.113.7", 20.0)
    assert bans.banned("203.0.113.7", 21.0)
    assert not bans.banned("203.0.113.8", 21.0)  # only that source
    assert bans.banned("203.0.113.7", 619.0)
    assert not bans.banned("203.0.113.7", 621.0)  # lifted


def test_failures_outside_the_window_do_not_count() -> None:
    bans = FailureBans(max_failures=3, window=60.0, ignore=())
    for t in (0.0, 50.0, 100.0, 150.0):
        bans.failed("198.51.100.1", t)
    assert not bans.banned("198.51.100.1", 151.0)


def test_a_success_clears_the_count() -> None:
    bans = FailureBans(max_failures=2, ignore=())
    bans.failed("198.51.100.2", 0.0)
    bans.succeeded("198.51.100.2")
    bans.failed("198.51.100.2", 1.0)
    assert not bans.banned("198.51.100.2", 2.0)


def test_ignored_networks_and_host_names_are_never_banned() -> None:
    bans = FailureBans(max_failures=1, ignore=("10.0.0.0/8",))
    bans.failed("10.1.2.3", 0.0)
    bans.failed("phone.example", 0.0)
    assert not bans.banned("10.1.2.3", 1.0)
    assert not bans.banned("phone.example", 1.0)
    default = FailureBans(max_failures=1)
    default.failed("127.0.0.1", 0.0)
    assert not default.banned("127.0.0.1", 1.0)


def test_zero_failures_turns_bans_off() -> None:
    bans = FailureBans(max_failures=0, ignore=())
    for t in range(100):
        bans.failed("203.0.113.9", float(t))
    assert not bans.banned("203.0.113.9", 100.0)
