"""Settings layering (CLI > env > TOML > defaults), value parsing, and the CLI frame."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

import pypbx
from pypbx import __version__, cli
from pypbx.config import (
    OPTIONS,
    ConfigError,
    HostPort,
    PortRange,
    Settings,
    load_settings,
    parse_host_port,
    parse_port_range,
)


def ns(**kwargs: object) -> argparse.Namespace:
    """A namespace shaped like `pypbx serve`'s, every flag unset unless given."""
    base: dict[str, object] = {opt.attr: None for opt in OPTIONS}
    base["config"] = None
    base.update(kwargs)
    return argparse.Namespace(**base)


def write(tmp_path: Path, text: str, name: str = "pypbx.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- defaults ---------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(ns(), {})
    assert s.data_dir == Path("data")
    assert s.db_url == "sqlite+aiosqlite:///data/pypbx.sqlite3"
    assert s.sip_listen == HostPort("0.0.0.0", 5060)
    assert s.http_listen == HostPort("0.0.0.0", 7780)
    assert s.rtp_ports == PortRange(10000, 20000)
    assert s.admin_password is None
    assert s.log_level == "INFO"
    assert s.config_file is None
    assert s.sip.realm == "pypbx"
    assert s.sip.ring_timeout == 90
    assert (s.sip.min_expires, s.sip.default_expires, s.sip.max_expires) == (60, 600, 3600)
    assert s.sip.nonce_lifetime == 300
    assert s.sip.advertised_address is None
    assert s.sip.user_agent == f"pypbx/{__version__}"
    assert s.http_api.auth_required is True
    assert s.http_api.allowed_networks == []
    assert s.http_api.denied_addresses == []
    assert s.http_api.domain == "localhost"
    assert s.media.advertised_address is None
    assert s.security.keep_sip_passwords is True


def test_settings_constructed_directly_get_a_db_in_their_data_dir() -> None:
    assert (
        Settings(data_dir=Path("/srv/pbx")).db_url == "sqlite+aiosqlite:////srv/pbx/pypbx.sqlite3"
    )
    assert Settings(db_url="postgresql+asyncpg://h/db").db_url == "postgresql+asyncpg://h/db"


def test_no_arguments_at_all_gives_defaults() -> None:
    assert load_settings() == Settings()


def test_host_port_and_range_render_back() -> None:
    assert str(HostPort("::1", 5060)) == "[::1]:5060"
    assert str(HostPort("10.0.0.1", 5060)) == "10.0.0.1:5060"
    assert str(PortRange(10000, 10100)) == "10000-10100"


# -- precedence -------------------------------------------------------------------------------

# attr -> (cli value, env value, toml value, expected from cli, from env, from toml)
LAYER_CASES = {
    "data_dir": ("/c", "/e", "/t", Path("/c"), Path("/e"), Path("/t")),
    "db_url": (
        "sqlite+aiosqlite:///c.db",
        "sqlite+aiosqlite:///e.db",
        "sqlite+aiosqlite:///t.db",
        "sqlite+aiosqlite:///c.db",
        "sqlite+aiosqlite:///e.db",
        "sqlite+aiosqlite:///t.db",
    ),
    "sip_listen": (
        "127.0.0.1:5061",
        "127.0.0.2:5062",
        "127.0.0.3:5063",
        HostPort("127.0.0.1", 5061),
        HostPort("127.0.0.2", 5062),
        HostPort("127.0.0.3", 5063),
    ),
    "http_listen": (
        "127.0.0.1:8001",
        "127.0.0.1:8002",
        "127.0.0.1:8003",
        HostPort("127.0.0.1", 8001),
        HostPort("127.0.0.1", 8002),
        HostPort("127.0.0.1", 8003),
    ),
    "rtp_ports": (
        "1000-1100",
        "2000-2100",
        "3000-3100",
        PortRange(1000, 1100),
        PortRange(2000, 2100),
        PortRange(3000, 3100),
    ),
    "admin_password": ("c-pw", "e-pw", "t-pw", "c-pw", "e-pw", "t-pw"),
    "log_level": ("debug", "WARNING", "error", "DEBUG", "WARNING", "ERROR"),
    "event_loop": ("asyncio", "UVLOOP", "auto", "asyncio", "uvloop", "auto"),
}


@pytest.mark.parametrize("opt", OPTIONS, ids=[o.attr for o in OPTIONS])
def test_cli_beats_env_beats_toml_beats_default(opt, tmp_path: Path) -> None:
    cli_v, env_v, toml_v, from_cli, from_env, from_toml = LAYER_CASES[opt.attr]
    toml = write(tmp_path, f'{opt.toml} = "{toml_v}"\n')
    env = {opt.env: env_v}
    assert getattr(load_settings(ns(**{opt.attr: cli_v}), env, toml), opt.attr) == from_cli
    assert getattr(load_settings(ns(), env, toml), opt.attr) == from_env
    assert getattr(load_settings(ns(), {}, toml), opt.attr) == from_toml
    assert getattr(load_settings(ns(), {}, None), opt.attr) == getattr(Settings(), opt.attr)


def test_every_option_has_a_layer_case() -> None:
    assert {o.attr for o in OPTIONS} == set(LAYER_CASES)


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    toml = write(tmp_path, 'log_level = "ERROR"\n')
    assert load_settings(ns(), {"PYPBX_LOG_LEVEL": ""}, toml).log_level == "ERROR"


def test_default_db_follows_data_dir_from_any_layer(tmp_path: Path) -> None:
    toml = write(tmp_path, 'data_dir = "/from/toml"\n')
    assert load_settings(ns(), {}, toml).db_url == "sqlite+aiosqlite:////from/toml/pypbx.sqlite3"
    s = load_settings(ns(data_dir="/from/cli"), {}, toml)
    assert s.db_url == "sqlite+aiosqlite:////from/cli/pypbx.sqlite3"


def test_explicit_db_is_kept_when_data_dir_changes(tmp_path: Path) -> None:
    toml = write(tmp_path, 'db = "postgresql+asyncpg://pbx@db/pbx"\n')
    s = load_settings(ns(data_dir="/x"), {}, toml)
    assert s.db_url == "postgresql+asyncpg://pbx@db/pbx"


def test_config_file_from_flag_beats_environment(tmp_path: Path) -> None:
    flag = write(tmp_path, 'log_level = "ERROR"\n', "flag.toml")
    env = write(tmp_path, 'log_level = "WARNING"\n', "env.toml")
    s = load_settings(ns(config=str(flag)), {"PYPBX_CONFIG": str(env)})
    assert (s.log_level, s.config_file) == ("ERROR", flag)
    s = load_settings(ns(), {"PYPBX_CONFIG": str(env)})
    assert (s.log_level, s.config_file) == ("WARNING", env)


# -- TOML sections ----------------------------------------------------------------------------

FULL_TOML = """
data_dir = "/var/lib/pypbx"
rtp_ports = [30000, 30100]

[sip]
realm = "example.org"
ring_timeout = 30
min_expires = 30
max_expires = 7200
default_expires = 300
nonce_lifetime = 60
advertised_address = "203.0.113.5"
user_agent = "MyPBX"

[http_api]
auth_required = false
allowed_networks = ["192.168.0.0/16", "10.0.0.1"]
denied_addresses = ["192.168.1.15"]
domain = "pbx.example.org"

[media]
advertised_address = "203.0.113.6"

[security]
keep_sip_passwords = false
"""


def test_full_toml_file(tmp_path: Path) -> None:
    s = load_settings(ns(), {}, write(tmp_path, FULL_TOML))
    assert s.data_dir == Path("/var/lib/pypbx")
    assert s.rtp_ports == PortRange(30000, 30100)
    assert s.sip.realm == "example.org"
    assert s.sip.ring_timeout == 30.0
    assert isinstance(s.sip.ring_timeout, float)
    assert (s.sip.min_expires, s.sip.default_expires, s.sip.max_expires) == (30, 300, 7200)
    assert s.sip.nonce_lifetime == 60
    assert s.sip.advertised_address == "203.0.113.5"
    assert s.sip.user_agent == "MyPBX"
    assert s.http_api.auth_required is False
    assert s.http_api.allowed_networks == ["192.168.0.0/16", "10.0.0.1"]
    assert s.http_api.denied_addresses == ["192.168.1.15"]
    assert s.http_api.domain == "pbx.example.org"
    assert s.media.advertised_address == "203.0.113.6"
    assert s.security.keep_sip_passwords is False


def test_partial_section_keeps_other_defaults(tmp_path: Path) -> None:
    s = load_settings(ns(), {}, write(tmp_path, "[sip]\nring_timeout = 2.5\n"))
    assert s.sip.ring_timeout == 2.5
    assert s.sip.realm == "pypbx"
    assert s.http_api.auth_required is True


def test_empty_advertised_address_means_none(tmp_path: Path) -> None:
    s = load_settings(ns(), {}, write(tmp_path, '[media]\nadvertised_address = ""\n'))
    assert s.media.advertised_address is None


# -- errors -----------------------------------------------------------------------------------

LEVELS_ERROR = "invalid {source}: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
DB_ERROR = (
    "invalid {source}: expected a SQLAlchemy URL such as sqlite+aiosqlite:///path/pypbx.sqlite3"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1\n", "unknown key 'bogus' in {path}"),
        ("[sip]\nrelm = 'x'\n", "unknown key 'relm' in [sip] of {path}"),
        (
            "[sip]\nring_timeout = 'long'\n",
            "invalid sip.ring_timeout in {path}: expected a positive number",
        ),
        (
            "[sip]\nring_timeout = 0\n",
            "invalid sip.ring_timeout in {path}: expected a positive number",
        ),
        (
            "[sip]\nmin_expires = true\n",
            "invalid sip.min_expires in {path}: expected a non-negative integer",
        ),
        ("[sip]\nrealm = ''\n", "invalid sip.realm in {path}: expected a non-empty string"),
        (
            "[sip]\nadvertised_address = 1\n",
            "invalid sip.advertised_address in {path}: expected a string",
        ),
        (
            "[sip]\nmin_expires = 700\n",
            "invalid [sip] in {path}: need min_expires <= default_expires <= max_expires "
            "(got 700, 600, 3600)",
        ),
        ("[sip]\nnonce_lifetime = 0\n", "invalid sip.nonce_lifetime in {path}: must be positive"),
        (
            "[http_api]\nauth_required = 'yes'\n",
            "invalid http_api.auth_required in {path}: expected true or false",
        ),
        (
            "[http_api]\nallowed_networks = '10.0.0.0/8'\n",
            "invalid http_api.allowed_networks in {path}: expected a list of strings",
        ),
        (
            "[http_api]\ndenied_addresses = ['10.0.0.300']\n",
            'invalid http_api.denied_addresses in {path}: "10.0.0.300" is not an IP address '
            "or CIDR network",
        ),
        ("sip = 5\n", "invalid [sip] in {path}: expected a table"),
        ("rtp_ports = [1, 2, 3]\n", 'invalid rtp_ports in {path}: expected [LO, HI] or "LO-HI"'),
        ("rtp_ports = 5\n", "invalid rtp_ports in {path}: expected a string, got int"),
        ('rtp_ports = "9-3"\n', 'invalid rtp_ports in {path} "9-3": LO must be below HI'),
        ('sip_listen = "nohost"\n', 'invalid sip_listen in {path} "nohost": expected HOST:PORT'),
        ("sip_listen = 5060\n", "invalid sip_listen in {path}: expected a string, got int"),
        ('log_level = "LOUD"\n', LEVELS_ERROR.format(source='log_level in {path} "LOUD"')),
        ('db = "pypbx.sqlite3"\n', DB_ERROR.format(source="db in {path}")),
        ('admin_password = ""\n', "invalid admin_password in {path}: must not be empty"),
    ],
)
def test_toml_errors_name_the_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(ns(), {}, path)
    assert str(info.value) == message.format(path=path)


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir = \n")
    with pytest.raises(ConfigError, match=rf"^invalid TOML in {path}: "):
        load_settings(ns(), {}, path)


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(ns(config=str(path)), {})
    assert str(info.value) == f"config file not found: {path}"


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("rtp_ports", "x", 'invalid --rtp-ports "x": expected LO-HI'),
        ("rtp_ports", "10000-", 'invalid --rtp-ports "10000-": expected LO-HI'),
        ("rtp_ports", "0-100", 'invalid --rtp-ports "0-100": port must be 1-65535'),
        ("rtp_ports", "100-70000", 'invalid --rtp-ports "100-70000": port must be 1-65535'),
        ("rtp_ports", "5000-5000", 'invalid --rtp-ports "5000-5000": LO must be below HI'),
        ("sip_listen", "5060", 'invalid --sip-listen "5060": expected HOST:PORT'),
        ("sip_listen", ":5060", 'invalid --sip-listen ":5060": missing host'),
        ("sip_listen", "host:http", 'invalid --sip-listen "host:http": port must be a number'),
        ("sip_listen", "::1:5060", 'invalid --sip-listen "::1:5060": expected HOST:PORT'),
        ("sip_listen", "[::1]5060", 'invalid --sip-listen "[::1]5060": expected HOST:PORT'),
        ("http_listen", "h:0", 'invalid --http-listen "h:0": port must be 1-65535'),
        ("log_level", "verbose", LEVELS_ERROR.format(source='--log-level "verbose"')),
        ("db_url", "", DB_ERROR.format(source="--db")),
        ("admin_password", "", "invalid --admin-password: must not be empty"),
        ("data_dir", "", "invalid --data-dir: must not be empty"),
    ],
)
def test_cli_value_errors_name_the_flag(attr: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ns(**{attr: value}), {})
    assert str(info.value) == message


def test_env_value_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ns(), {"PYPBX_RTP_PORTS": "x"})
    assert str(info.value) == 'invalid PYPBX_RTP_PORTS "x": expected LO-HI'


def test_db_url_is_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ns(db_url="user:secret@host/db"), {})
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5060", HostPort("127.0.0.1", 5060)),
        ("[::1]:5060", HostPort("::1", 5060)),
        ("pbx.example.org:5080", HostPort("pbx.example.org", 5080)),
        (" 0.0.0.0:7780 ", HostPort("0.0.0.0", 7780)),
    ],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text, "x") == expected


def test_parse_port_range_allows_spaces() -> None:
    assert parse_port_range(" 10000 - 10010 ", "x") == PortRange(10000, 10010)


# -- redaction --------------------------------------------------------------------------------


def test_redacted_view_hides_secrets() -> None:
    s = Settings(admin_password="hunter2", db_url="postgresql+asyncpg://pbx:pw@db:5432/pbx")
    view = s.redacted()
    assert view["admin_password"] == "***"
    assert view["db_url"] == "postgresql+asyncpg://pbx:***@db:5432/pbx"
    assert "hunter2" not in repr(view)
    assert Settings().redacted()["admin_password"] is None


# -- the command line -------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pypbx {__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_bad_flag_value_exits_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--rtp-ports", "x"])
    assert info.value.code == 2
    assert 'pypbx: error: invalid --rtp-ports "x": expected LO-HI' in capsys.readouterr().err


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace pypbx.app with a serve() that records its settings and waits for cancel."""
    seen: list[Settings] = []

    async def serve(settings: Settings) -> None:
        seen.append(settings)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)

    module = types.ModuleType("pypbx.app")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pypbx.app", module)
    monkeypatch.setattr(pypbx, "app", module, raising=False)
    return seen


def test_serve_runs_the_app_and_exits_0_on_sigterm(
    fake_app: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for opt in OPTIONS:
        monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.setenv("PYPBX_ADMIN_PASSWORD", "from-env")
    argv = ["serve", "--data-dir", str(tmp_path), "--sip-listen", "127.0.0.1:5999"]
    status = cli.main([*argv, "--log-level", "warning"])
    assert status == 0
    (settings,) = fake_app
    assert settings.data_dir == tmp_path
    assert settings.sip_listen == HostPort("127.0.0.1", 5999)
    assert settings.admin_password == "from-env"
    assert settings.log_level == "WARNING"


def test_python_dash_m_pypbx() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pypbx", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"pypbx {__version__}"


def test_event_loop_choice_is_checked_and_auto_takes_uvloop_when_installed() -> None:
    import uvloop

    from pypbx.cli import event_loop_factory

    with pytest.raises(ConfigError, match="expected one of auto, uvloop, asyncio"):
        load_settings(ns(), {"PYPBX_EVENT_LOOP": "trio"})
    assert event_loop_factory("asyncio") is None
    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop
