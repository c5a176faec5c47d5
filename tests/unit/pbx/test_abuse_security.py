"""The `[security]` settings: defaults, TOML parsing and checking, and the protections
they build (separate SIP and API ban lists, flood limits banning into the SIP list)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypbx.config import ConfigError, SecuritySettings, load_settings
from pypbx.pbx.security import protection


def load(tmp_path: Path, body: str) -> SecuritySettings:
    path = tmp_path / "pypbx.toml"
    path.write_text(f"[security]\n{body}\n")
    return load_settings(toml_path=path).security


def test_defaults() -> None:
    s = SecuritySettings()
    assert (s.invite_rate, s.invite_burst) == (10.0, 50)
    assert (s.register_rate, s.register_burst) == (20.0, 200)
    assert (s.other_rate, s.other_burst) == (50.0, 200)
    assert (s.flood_ban_after, s.flood_ban_seconds) == (30, 600)
    assert (s.max_calls, s.max_calls_per_extension) == (0, 0)
    assert s.auth_ban_ignore == ["127.0.0.0/8", "::1/128"]


def test_toml_values(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "invite_rate = 2\nregister_burst = 0\nmax_calls = 2\nmax_calls_per_extension = 1\n"
        "auth_ban_ignore = []\nflood_ban_after = 0",
    )
    assert s.invite_rate == 2.0 and isinstance(s.invite_rate, float)
    assert (s.register_burst, s.max_calls, s.max_calls_per_extension) == (0, 2, 1)
    assert s.auth_ban_ignore == [] and s.flood_ban_after == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("invite_rate = 0", "invalid security.invite_rate in {path}: expected a positive number"),
        (
            "register_burst = -1",
            "invalid security.register_burst in {path}: expected a non-negative integer",
        ),
        (
            "max_calls = 2.5",
            "invalid security.max_calls in {path}: expected a non-negative integer",
        ),
        ("flood_limit = 3", "unknown key 'flood_limit' in [security] of {path}"),
        (
            'auth_ban_ignore = ["office"]',
            'invalid security.auth_ban_ignore in {path}: "office" is not an IP address or CIDR '
            "network",
        ),
    ],
)
def test_bad_values_are_reported(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, body)
    assert str(exc.value) == message.format(path=tmp_path / "pypbx.toml")


def test_protection_wires_the_settings() -> None:
    settings = SecuritySettings(
        auth_ban_failures=2,
        auth_ban_ignore=["10.0.0.0/8"],
        invite_rate=1.0,
        invite_burst=1,
        flood_ban_after=5,
        flood_ban_seconds=60,
        max_calls=7,
        max_calls_per_extension=3,
    )
    guard = protection(settings)
    assert guard.sip_bans is not guard.api_bans
    assert guard.flood.bans is guard.sip_bans
    assert (guard.calls.max_calls, guard.calls.per_extension) == (7, 3)
    for bans in (guard.sip_bans, guard.api_bans):
        bans.failed("10.1.1.1", 0.0)
        bans.failed("10.1.1.1", 0.0)
        assert not bans.banned("10.1.1.1", 1.0)  # the one ignore list
    guard.api_bans.failed("192.0.2.1", 0.0)
    guard.api_bans.failed("192.0.2.1", 0.0)
    assert guard.api_bans.banned("192.0.2.1", 1.0)
    assert not guard.sip_bans.banned("192.0.2.1", 1.0)  # SIP is not locked out by API logins
    assert guard.flood.check("10.1.1.1", "INVITE", 0.0) is None
    assert guard.flood.check("10.1.1.1", "INVITE", 0.0) is None
    now = 0.0
    while now < 6.0:  # flooding INVITEs for 6 s: banned from SIP
        guard.flood.check("192.0.2.9", "INVITE", now)
        now += 0.1
    assert guard.sip_bans.banned("192.0.2.9", now)
    assert not guard.api_bans.banned("192.0.2.9", now)
