"""Runtime settings: CLI flags > environment (PYPBX_*) > TOML file > defaults.

One dataclass tree is built once at startup and handed to the app, so no module reads the
environment or the file on its own. Every bad value is reported with the
place it came from (`--rtp-ports`, `PYPBX_RTP_PORTS`, or the TOML key and file), because
"invalid port" without a source is useless to someone with three layers of configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pypbx import __version__
from pypbx.messaging.email import EmailSettings
from pypbx.messaging.smpp import SmppSettings
from pypbx.pbx.dialplan import DialPlanError, rules_from_toml

logger = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is malformed; the message names the setting and where it came from."""


class HostPort(NamedTuple):
    """A listen address; `host` is an IP literal (IPv6 without brackets) or a host name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class PortRange(NamedTuple):
    """Inclusive UDP port range for RTP (and RTCP on the odd neighbours)."""

    lo: int
    hi: int

    def __str__(self) -> str:
        return f"{self.lo}-{self.hi}"


@dataclass
class SipSettings:
    """[sip] section of the TOML file (no CLI flags: rarely changed, many knobs)."""

    realm: str = "pypbx"
    ring_timeout: float = 90.0
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    nonce_lifetime: int = 300
    advertised_address: str | None = None
    user_agent: str = f"pypbx/{__version__}"
    # Challenges offered, in order. MD5 alone by default: baresip 1.0, SIPp and many desk
    # phones give up when any challenge names an algorithm they lack.
    digest_algorithms: list[str] = field(default_factory=lambda: ["MD5"])
    # Session timers (RFC 4028): the interval pypbx asks callees for (0: it never asks, but
    # still honours a phone that does), and the shortest interval it accepts (422 below it).
    session_expires: int = 1800
    session_min_se: int = 90


@dataclass
class HttpApiSettings:
    """[http_api] section: access control for the Ozeki-compatible HTTP API."""

    auth_required: bool = True
    allowed_networks: list[str] = field(default_factory=list)
    denied_addresses: list[str] = field(default_factory=list)
    domain: str = "localhost"
    # Base of the URLs pypbx hands out (RecordURL); None: http://<advertised address>:<port>
    public_url: str | None = None
    default_api_extension: str | None = None  # used when a command omits ApiExtension
    call_changed_url: str | None = None  # CallChanged notifications for every call (spec 4.2)
    route_interception_url: str | None = None  # RoutingInterception: the app routes calls


@dataclass
class MediaSettings:
    """[media] section."""

    advertised_address: str | None = None
    hold_music: str | None = None  # a WAV file; None: the built-in tune
    # Where Play finds relative AudioFile paths; empty: <data_dir>/media only.
    media_dirs: list[str] = field(default_factory=list)
    # Where Record writes; RecordPath must lie under one of these. None: <data_dir>/recordings.
    recordings_dir: str | None = None
    # In-band (Goertzel) DTMF detection: "auto" for phones without telephone-event, "always",
    # or "off". RFC 4733 and SIP INFO key presses are always detected.
    inband_dtmf: str = "auto"
    dtmf_duration_ms: int = 100  # SendDTMF tone and pause lengths (spec 8.8)
    dtmf_pause_ms: int = 100
    download_timeout: float = 10.0  # Play from a URL
    download_max_bytes: int = 20_000_000
    tts_voice: str = "en-us"  # espeak-ng voice when Speak names no known Language/Voice
    rtp_timeout: int = 60  # seconds without RTP from a phone in a call that end it; 0: never
    # Calls that only relay (no hold, prompt, recording...) move to a relay worker process
    # after `relay_worker_after` seconds; false: the event loop relays every call itself.
    relay_worker: bool = True
    relay_worker_after: float = 2.0


@dataclass
class EmailConfig:
    """[email] section: the SMTP server SendEmail uses; no host: SendEmail answers 501."""

    host: str | None = None
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: str = "auto"  # "auto", "always" or "never"
    use_tls: bool = False  # implicit TLS (port 465)
    from_address: str | None = None
    timeout: float = 30.0
    attachment_dirs: list[str] = field(default_factory=list)

    def settings(self) -> EmailSettings | None:
        """The sender's settings (ValueError names a bad field); None without a host."""
        if not self.host:
            return None
        return EmailSettings(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            starttls=self.starttls,  # type: ignore[arg-type]  # EmailSettings checks it
            use_tls=self.use_tls,
            from_address=self.from_address,
            timeout=self.timeout,
            attachment_dirs=tuple(Path(d) for d in self.attachment_dirs),
        )


@dataclass
class SmppConfig:
    """[smpp] section: the SMSC that SendSms to numbers outside the PBX goes through; no
    host: such SendSms answers 501 as without a gateway."""

    host: str | None = None
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    source_addr: str = ""  # sender number when SendSms gives none
    # API extension that gets incoming SMS for numbers that are no API extension's
    incoming_api_extension: str | None = None

    def settings(self) -> SmppSettings | None:
        """The gateway's settings (ValueError names a bad field); None without a host."""
        if not self.host:
            return None
        return SmppSettings(
            host=self.host,
            port=self.port,
            system_id=self.system_id,
            password=self.password,
            system_type=self.system_type,
            source_addr=self.source_addr,
        )


@dataclass
class DialPlanSettings:
    """[dialplan] section: `[[dialplan.rules]]` tables, fixed for the process's life (rules
    managed over the API, ExtensionType DialPlanRule, come after them in `order`)."""

    rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class NotificationSettings:
    """[notifications] section: how webhooks (RecordCompleted, CallChanged, ...) are sent."""

    timeout: float = 10.0
    retries: int = 1  # for reports; notifications that steer a live call are never retried
    retry_delay: float = 2.0
    secret: str | None = None  # HMAC key for the X-Pypbx-Signature header


@dataclass
class SecuritySettings:
    """[security] section.

    keep_sip_passwords: store SIP passwords so GetConfig can return them (Ozeki behaviour);
    when false only the digest HA1 is kept.
    """

    keep_sip_passwords: bool = True
    # Failed SIP authentications from one address within `auth_ban_window` seconds that
    # get it banned (its requests answered 403) for `auth_ban_seconds`; 0 turns bans off.
    # HTTP API logins are counted and banned the same way (banned: 305), on their own list.
    auth_ban_failures: int = 10
    auth_ban_window: float = 60.0
    auth_ban_seconds: float = 600.0
    # Never banned nor rate limited (local services; an office NAT address can go here).
    auth_ban_ignore: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Flood limits per source address: requests per second and burst (bucket size) for
    # INVITE, REGISTER and other out-of-dialog requests. Over them INVITE/REGISTER get 503
    # with Retry-After and others are dropped; a burst of 0 turns that limit off.
    invite_rate: float = 10.0
    invite_burst: int = 50
    register_rate: float = 20.0
    register_burst: int = 200
    other_rate: float = 50.0
    other_burst: int = 200
    # A source still flooding after `flood_ban_after` seconds is banned for
    # `flood_ban_seconds`; 0 for either: never.
    flood_ban_after: int = 30
    flood_ban_seconds: int = 600
    # Concurrent calls: in all (a new call gets 503) and per SIP extension, counting calls
    # it places or receives (a caller at its limit gets 486, a callee is busy); 0: no limit.
    max_calls: int = 0
    max_calls_per_extension: int = 0


DEFAULT_SIP_LISTEN = HostPort("0.0.0.0", 5060)
DEFAULT_HTTP_LISTEN = HostPort("0.0.0.0", 7780)
DEFAULT_RTP_PORTS = PortRange(10000, 20000)


def default_db_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir}/pypbx.sqlite3"


@dataclass
class Settings:
    """Everything the PBX needs to start. Build it with load_settings()."""

    data_dir: Path = Path("data")
    db_url: str = ""  # empty: SQLite file in data_dir (filled in by __post_init__)
    sip_listen: HostPort = DEFAULT_SIP_LISTEN
    http_listen: HostPort = DEFAULT_HTTP_LISTEN
    rtp_ports: PortRange = DEFAULT_RTP_PORTS
    admin_password: str | None = None
    log_level: str = "INFO"
    # "auto": uvloop when it is installed (it is a dependency on Linux and macOS), else
    # asyncio's own loop; "uvloop" insists on it; "asyncio" never uses it.
    event_loop: str = "auto"
    sip: SipSettings = field(default_factory=SipSettings)
    http_api: HttpApiSettings = field(default_factory=HttpApiSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    email: EmailConfig = field(default_factory=EmailConfig)
    smpp: SmppConfig = field(default_factory=SmppConfig)
    dialplan: DialPlanSettings = field(default_factory=DialPlanSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    config_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.db_url:
            self.db_url = default_db_url(self.data_dir)

    def redacted(self) -> dict[str, Any]:
        """A loggable view: the admin password and database credentials are masked."""
        view = dataclasses.asdict(self)
        if self.admin_password is not None:
            view["admin_password"] = "***"
        if self.notifications.secret is not None:
            view["notifications"]["secret"] = "***"
        if self.email.password is not None:
            view["email"]["password"] = "***"
        if self.smpp.password:
            view["smpp"]["password"] = "***"
        view["db_url"] = _redact_url(self.db_url)
        return view


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# -- value parsers: each takes the raw value and the source label used in error messages --


def parse_host_port(value: str, source: str) -> HostPort:
    """Parse HOST:PORT or [IPv6]:PORT."""
    text = value.strip()
    host: str
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ConfigError(f'invalid {source} "{value}": expected HOST:PORT')
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f'invalid {source} "{value}": expected HOST:PORT')
    if not host:
        raise ConfigError(f'invalid {source} "{value}": missing host')
    return HostPort(host, _port(port_text, value, source))


def _port(text: str, value: str, source: str) -> int:
    if not text.isdigit():
        raise ConfigError(f'invalid {source} "{value}": port must be a number')
    port = int(text)
    if not 1 <= port <= 65535:
        raise ConfigError(f'invalid {source} "{value}": port must be 1-65535')
    return port


def parse_port_range(value: str, source: str) -> PortRange:
    """Parse LO-HI (inclusive); at least two ports, since RTP and RTCP come in pairs."""
    lo_text, sep, hi_text = value.strip().partition("-")
    if not sep or not lo_text.strip().isdigit() or not hi_text.strip().isdigit():
        raise ConfigError(f'invalid {source} "{value}": expected LO-HI')
    lo, hi = _port(lo_text.strip(), value, source), _port(hi_text.strip(), value, source)
    if lo >= hi:
        raise ConfigError(f'invalid {source} "{value}": LO must be below HI')
    return PortRange(lo, hi)


def parse_log_level(value: str, source: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f'invalid {source} "{value}": expected one of {", ".join(LOG_LEVELS)}')
    return level


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def parse_event_loop(value: str, source: str) -> str:
    loop = value.strip().lower()
    if loop not in EVENT_LOOPS:
        raise ConfigError(f'invalid {source} "{value}": expected one of {", ".join(EVENT_LOOPS)}')
    return loop


def parse_db_url(value: str, source: str) -> str:
    if "://" not in value:
        # the value is not echoed: a mistyped URL may still contain a password
        raise ConfigError(
            f"invalid {source}: expected a SQLAlchemy URL such as "
            "sqlite+aiosqlite:///path/pypbx.sqlite3"
        )
    return value


def _nonempty(value: str, source: str) -> str:
    if not value:
        raise ConfigError(f"invalid {source}: must not be empty")
    return value


def _path(value: str, source: str) -> Path:
    return Path(_nonempty(value, source))


# -- the top-level settings that have a CLI flag, an environment variable and a TOML key --


@dataclass(frozen=True)
class _Option:
    attr: str  # Settings field
    flag: str  # --flag (argparse dest is attr)
    env: str
    toml: str
    parse: Callable[[str, str], Any]


OPTIONS = (
    _Option("data_dir", "--data-dir", "PYPBX_DATA_DIR", "data_dir", _path),
    _Option("db_url", "--db", "PYPBX_DB", "db", parse_db_url),
    _Option("sip_listen", "--sip-listen", "PYPBX_SIP_LISTEN", "sip_listen", parse_host_port),
    _Option("http_listen", "--http-listen", "PYPBX_HTTP_LISTEN", "http_listen", parse_host_port),
    _Option("rtp_ports", "--rtp-ports", "PYPBX_RTP_PORTS", "rtp_ports", parse_port_range),
    _Option(
        "admin_password", "--admin-password", "PYPBX_ADMIN_PASSWORD", "admin_password", _nonempty
    ),
    _Option("log_level", "--log-level", "PYPBX_LOG_LEVEL", "log_level", parse_log_level),
    _Option("event_loop", "--event-loop", "PYPBX_EVENT_LOOP", "event_loop", parse_event_loop),
)

SECTIONS: dict[str, type[Any]] = {
    "sip": SipSettings,
    "http_api": HttpApiSettings,
    "media": MediaSettings,
    "notifications": NotificationSettings,
    "email": EmailConfig,
    "smpp": SmppConfig,
    "dialplan": DialPlanSettings,
    "security": SecuritySettings,
}

CONFIG_ENV = "PYPBX_CONFIG"


def load_settings(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
) -> Settings:
    """Merge the layers into Settings; raise ConfigError naming the first bad value.

    The TOML file is `toml_path` if given, else `args.config`, else $PYPBX_CONFIG; with none
    of them no file is read. `environ` is passed in (not read from os.environ) so tests and
    embedders control it. Empty environment variables count as unset. Relative paths are
    relative to the working directory. The default database lives in the final data_dir,
    whichever layer chose it.
    """
    env = environ or {}
    path = toml_path or getattr(args, "config", None) or env.get(CONFIG_ENV) or None
    file_values: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    if path is not None:
        file_values, sections = _read_toml(Path(path))

    values: dict[str, Any] = {}
    for opt in OPTIONS:
        cli_value = getattr(args, opt.attr, None) if args is not None else None
        env_value = env.get(opt.env) or None
        if cli_value is not None:
            values[opt.attr] = opt.parse(str(cli_value), opt.flag)
        elif env_value is not None:
            values[opt.attr] = opt.parse(env_value, opt.env)
        elif opt.toml in file_values:
            values[opt.attr] = _toml_top_level(opt, file_values[opt.toml], Path(str(path)))
    settings = Settings(**values, **sections)
    settings.config_file = Path(path) if path is not None else None
    return settings


def _read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None
    known_top = {opt.toml for opt in OPTIONS}
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"invalid [{key}] in {path}: expected a table")
            sections[key] = _build_section(key, SECTIONS[key], value, path)
        elif key in known_top:
            top[key] = value
        else:
            raise ConfigError(f"unknown key '{key}' in {path}")
    return top, sections


def _toml_top_level(opt: _Option, value: Any, path: Path) -> Any:
    source = f"{opt.toml} in {path}"
    if opt.attr == "rtp_ports" and isinstance(value, list):
        if len(value) != 2 or not all(_is_int(v) for v in value):
            raise ConfigError(f'invalid {source}: expected [LO, HI] or "LO-HI"')
        value = f"{value[0]}-{value[1]}"
    if not isinstance(value, str):
        raise ConfigError(f"invalid {source}: expected a string, got {type(value).__name__}")
    return opt.parse(value, source)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _build_section(name: str, cls: type[T], table: dict[str, Any], path: Path) -> T:
    """Type-check one TOML table against its dataclass; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{key}' in [{name}] of {path}")
        source = f"{name}.{key} in {path}"
        kwargs[key] = _check_type(value, str(fields[key].type), source)
    section = cls(**kwargs)
    _validate_section(section, path)
    return section


def _check_type(value: Any, type_name: str, source: str) -> Any:
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"invalid {source}: expected true or false")
    elif type_name == "int":
        if not _is_int(value) or value < 0:
            raise ConfigError(f"invalid {source}: expected a non-negative integer")
    elif type_name == "float":
        if not (_is_int(value) or isinstance(value, float)) or value <= 0:
            raise ConfigError(f"invalid {source}: expected a positive number")
        value = float(value)
    elif type_name == "str":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"invalid {source}: expected a non-empty string")
    elif type_name == "str | None":
        if not isinstance(value, str):
            raise ConfigError(f"invalid {source}: expected a string")
        value = value or None
    elif type_name == "list[dict[str, Any]]":
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"invalid {source}: expected an array of tables")
    elif type_name == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"invalid {source}: expected a list of strings")
    else:  # pragma: no cover - a new field type without a checker is a programming error
        raise AssertionError(f"no TOML type check for {type_name}")
    return value


def _validate_section(section: object, path: Path) -> None:
    """Cross-field and semantic checks that a per-value type check cannot do."""
    if isinstance(section, SipSettings):
        if not section.min_expires <= section.default_expires <= section.max_expires:
            raise ConfigError(
                f"invalid [sip] in {path}: need min_expires <= default_expires <= max_expires "
                f"(got {section.min_expires}, {section.default_expires}, {section.max_expires})"
            )
        if section.nonce_lifetime == 0:
            raise ConfigError(f"invalid sip.nonce_lifetime in {path}: must be positive")
        algorithms = [a.upper() for a in section.digest_algorithms]
        if not algorithms or any(a not in ("MD5", "SHA-256") for a in algorithms):
            raise ConfigError(
                f'invalid sip.digest_algorithms in {path}: expected a list of "MD5", "SHA-256"'
            )
        section.digest_algorithms = algorithms
        if section.session_min_se < 1:
            raise ConfigError(f"invalid sip.session_min_se in {path}: must be positive")
        if 0 < section.session_expires < section.session_min_se:
            raise ConfigError(
                f"invalid sip.session_expires in {path}: must be 0 or at least session_min_se "
                f"({section.session_min_se})"
            )
    elif isinstance(section, SecuritySettings):
        for entry in section.auth_ban_ignore:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f'invalid security.auth_ban_ignore in {path}: "{entry}" is not an IP '
                    "address or CIDR network"
                ) from None
    elif isinstance(section, DialPlanSettings):
        try:
            rules_from_toml(section.rules)
        except DialPlanError as exc:
            raise ConfigError(f"invalid [dialplan] in {path}: {exc}") from None
    elif isinstance(section, EmailConfig):
        try:
            section.settings()
        except ValueError as exc:
            raise ConfigError(f"invalid [email] in {path}: {exc}") from None
    elif isinstance(section, SmppConfig):
        try:
            section.settings()
        except ValueError as exc:
            raise ConfigError(f"invalid [smpp] in {path}: {exc}") from None
    elif isinstance(section, MediaSettings):
        if section.inband_dtmf not in ("auto", "always", "off"):
            raise ConfigError(
                f'invalid media.inband_dtmf in {path}: expected "auto", "always" or "off"'
            )
        for key in ("dtmf_duration_ms", "dtmf_pause_ms"):
            if not 40 <= getattr(section, key) <= 2000:
                raise ConfigError(f"invalid media.{key} in {path}: expected 40-2000")
    elif isinstance(section, HttpApiSettings):
        if section.public_url is not None and not section.public_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"invalid http_api.public_url in {path}: expected an http(s) URL")
        for key in ("allowed_networks", "denied_addresses"):
            for entry in getattr(section, key):
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ConfigError(
                        f'invalid http_api.{key} in {path}: "{entry}" is not an IP address '
                        "or CIDR network"
                    ) from None
