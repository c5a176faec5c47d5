"""The `[sip]` session-timer settings: defaults, test-sized values, and refused combinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypbx.config import ConfigError, load_settings


def settings_from(tmp_path: Path, text: str) -> tuple[int, int]:
    path = tmp_path / "pypbx.toml"
    path.write_text(text)
    sip = load_settings(toml_path=path).sip
    return sip.session_expires, sip.session_min_se


def test_defaults_follow_rfc_4028(tmp_path: Path) -> None:
    assert settings_from(tmp_path, "") == (1800, 90)


def test_short_values_for_tests_and_off(tmp_path: Path) -> None:
    assert settings_from(tmp_path, "[sip]\nsession_expires = 6\nsession_min_se = 2\n") == (6, 2)
    assert settings_from(tmp_path, "[sip]\nsession_expires = 0\n") == (0, 90)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\nsession_min_se = 0\n", "invalid sip.session_min_se in {path}: must be positive"),
        (
            "[sip]\nsession_expires = 60\n",
            "invalid sip.session_expires in {path}: must be 0 or at least session_min_se (90)",
        ),
        (
            "[sip]\nsession_expires = -1\n",
            "invalid sip.session_expires in {path}: expected a non-negative integer",
        ),
    ],
)
def test_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pypbx.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(toml_path=path)
    assert str(info.value) == message.format(path=path)
