"""ConfigXML of the configuration commands (spec 8.19-8.21): decode, parse, check, render.

ConfigXML arrives from the network, so it is parsed with defusedxml with DTDs forbidden:
a config document has no use for one, and entity-expansion bombs live there.

Two types are known. `SIP` (`SIPExtensionInfo`) is documented by Ozeki. `API`
(`APIExtensionInfo`) is ours, shaped after spec 7's data model, because Ozeki documents no
ConfigXML for API extensions; the decisions the spec leaves open:

* Elements: `ID` and `Enabled` (both required by AddConfig, checked as for SIP),
  `IncomingCallUrl`, `IncomingSmsUrl` (absolute http(s) URLs), `AllowedUsers` (office
  user names separated by commas), `DefaultCallerId` (number-string), `DefaultDisplayName`,
  `UserID`. The optional ones may be empty, which means "unset"; in ModifyConfig an empty
  element therefore clears the stored value (an absent one keeps it), unlike SIP where
  every element is mandatory and must not be empty.
* Values are trimmed; `AllowedUsers` drops empty names and duplicates (first one wins), so
  a user name containing a comma cannot be listed. Text with control characters is refused:
  display names end up in SIP headers and user names in log lines.
* GetConfig renders the stored values, not the effective ones: an empty `IncomingSmsUrl`
  stays empty (it follows `IncomingCallUrl`), so GetConfig output fed back to ModifyConfig
  changes nothing. The effective values are `pypbx.store.records.api_extension_settings`.
* Element order in GetConfig: the type's own elements, then `Enabled`, `ID`, `UserID` as
  in the SIP document; there is no `LastIPAddress`/`UserAgentName` since nothing registers.

`RingGroup`, `Line` and `DialPlanRule` (spec 8.3, 9.2, 10.4; all ours) follow the API
pattern through one table-driven mechanism (`SCHEMAS`), with these decisions:

* AddConfig needs `ID`, `Enabled` and the type's required elements (`Members`; `Host`;
  `Pattern` and `Destination`); a dial plan rule's `Enabled` may be left out and is then
  true (spec 9.2). Every absent setting is stored with its default, so GetConfig shows the
  values in force (`RingTime` 30, `Port` 5060, ...). In ModifyConfig an absent element keeps
  its value and an empty one resets it to the default (refused for required elements).
* Ring group `Members`: extension ids separated by commas, trimmed, repeats dropped, order
  kept (it is the `Hunt` order), 1 to 100 of them, never the group itself; they need not
  exist yet. `Fallback` is a number-string or empty.
* A line's `ID` is its name (`voipservice1`: letters, digits, `-`, `_`); `Host` is a host
  name or IP address (IPv6 without brackets), `OutboundProxy` is `host[:port]`, `DIDs` a
  comma-separated list of number-strings. `Register` needs a `Username` (checked on the
  merged configuration, so ModifyConfig cannot leave a registering line without one).
  `Password` goes to the record's password column; when GetConfig must not show it, the
  element is left out rather than sent empty, so a round trip keeps it.
* Dial plan rules: the spec 9.2 fields, stored as the (trimmed) strings the dial plan's
  `rule_from_fields` reads, which then checks the whole rule: a rule it would refuse is
  refused here (702) rather than stored. An empty `Order` means "after the other rules".
* Lines and rules have no `UserID` element (nobody owns them); a group has one.
"""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)
from defusedxml.ElementTree import fromstring

from pypbx.api import validators
from pypbx.api.xmlout import Node, leaf
from pypbx.pbx.dialplan import DialPlanError, rule_from_fields
from pypbx.store.records import (
    DEFAULT_GROUP_RING_TIME,
    DEFAULT_LINE_PORT,
    DEFAULT_REGISTER_EXPIRY,
    DIAL_PLAN_RULE_FIELDS,
    HTTP_API_SETTINGS_ID,
    LINE_TRANSPORTS,
    RING_STRATEGIES,
)

# ExtensionType -> knownType of its Config root (spec 8.18: `<Type>ExtensionInfo`); the order
# is ListExtensionTypes' order.
KNOWN_TYPES: dict[str, str] = {
    "SIP": "SIPExtensionInfo",
    "API": "APIExtensionInfo",
    "RingGroup": "RingGroupExtensionInfo",
    "Line": "LineExtensionInfo",
    "DialPlanRule": "DialPlanRuleExtensionInfo",
    "HttpApi": "HttpApiSettingsInfo",
}

SIP_FIELDS = ("AuthorizationName", "Password", "Username", "Enabled", "ID", "UserID")

# API element -> `settings` key (see pypbx.store.records.API_SETTING_KEYS), in GetConfig order.
API_SETTINGS = {
    "IncomingCallUrl": "incoming_call_url",
    "IncomingSmsUrl": "incoming_sms_url",
    "AllowedUsers": "allowed_users",
    "DefaultCallerId": "default_caller_id",
    "DefaultDisplayName": "default_display_name",
}
API_FIELDS = (*API_SETTINGS, "Enabled", "ID", "UserID")
API_REQUIRED = ("ID", "Enabled")

MAX_URL_LENGTH = 2048
MAX_TEXT_LENGTH = 128

_EXTENSION_ID = re.compile(r"[A-Za-z0-9+*#@.\-_]{1,64}")


class ConfigSyntaxError(ValueError):
    """ConfigXML is not well-formed or is refused by the XML guard (code 300)."""


class ConfigContentError(ValueError):
    """ConfigXML parses but is not an acceptable configuration (code 702)."""


def canonical_type(value: str) -> str | None:
    """The known ExtensionType matching `value` case-insensitively, else None."""
    folded = value.strip().casefold()
    return next((name for name in KNOWN_TYPES if name.casefold() == folded), None)


def _unescape_once(raw: str) -> str:
    """The documented example HTML-escaped the XML before URL-encoding it (spec 8.19).

    Surrounding whitespace (and a BOM) is dropped because an XML declaration must come first.
    """
    text = raw.strip().removeprefix("\ufeff").lstrip()
    return html.unescape(text).strip() if text.startswith("&lt;") else text


def _refusal(exc: DefusedXmlException) -> str:
    if isinstance(exc, DTDForbidden):
        return "ConfigXML must not contain a DTD"
    if isinstance(exc, EntitiesForbidden):
        return "ConfigXML must not declare entities"
    if isinstance(exc, ExternalReferenceForbidden):
        return "ConfigXML must not reference external resources"
    return "ConfigXML refused"


def parse_config(raw: str, extension_type: str) -> dict[str, str]:
    """The known child elements of `<Config knownType=...>` (first occurrence of each).

    Values are returned as written; unknown children are ignored. Only the document
    shape is checked here; field values are checked by `check_fields`.
    """
    try:
        root = fromstring(_unescape_once(raw), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ConfigSyntaxError(_refusal(exc)) from exc
    except ParseError as exc:
        raise ConfigSyntaxError(f"ConfigXML is not well-formed: {exc}") from exc
    if root.tag != "Config":
        raise ConfigContentError(f"root element is {root.tag!r}, not 'Config'")
    if root.get("knownType") != KNOWN_TYPES[extension_type]:
        raise ConfigContentError(f"knownType {root.get('knownType')!r} does not fit the type")
    known = FIELDS[extension_type]
    fields: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and child.tag in known and child.tag not in fields:
            fields[child.tag] = child.text or ""
    return fields


@dataclass(frozen=True, slots=True)
class SipConfig:
    """Checked SIP fields; None = element absent (ModifyConfig keeps the stored value)."""

    extension_id: str | None = None
    authorization_name: str | None = None
    password: str | None = None
    username: str | None = None
    enabled: bool | None = None
    user_id: str | None = None


def check_extension_id(value: str | None) -> str:
    stripped = (value or "").strip()
    if not _EXTENSION_ID.fullmatch(stripped):
        raise ConfigContentError("ID missing or invalid")
    return stripped


def _required_text(fields: dict[str, str], name: str, *, strip: bool = True) -> str | None:
    if name not in fields:
        return None
    value = fields[name]
    if not value.strip():
        raise ConfigContentError(f"{name} is empty")
    return value.strip() if strip else value


def check_fields(fields: dict[str, str], *, require_all: bool) -> SipConfig:
    """Validate present fields; with `require_all` (AddConfig) every field must be present."""
    if require_all:
        missing = [name for name in SIP_FIELDS if name not in fields]
        if missing:
            raise ConfigContentError(f"missing elements: {', '.join(missing)}")
    return SipConfig(
        extension_id=check_extension_id(fields["ID"]) if "ID" in fields else None,
        authorization_name=_required_text(fields, "AuthorizationName"),
        # A password is used exactly as written: surrounding spaces may be part of it.
        password=_required_text(fields, "Password", strip=False),
        username=_required_text(fields, "Username"),
        enabled=_enabled(fields),
        user_id=_required_text(fields, "UserID"),
    )


def _enabled(fields: dict[str, str]) -> bool | None:
    if "Enabled" not in fields:
        return None
    word = fields["Enabled"].strip().casefold()
    if word not in ("true", "false"):
        raise ConfigContentError("Enabled is not a bool")
    return word == "true"


def render_sip_config(
    *,
    known_type: str,
    authorization_name: str,
    password: str | None,
    username: str,
    last_ip: str,
    user_agent: str,
    enabled: bool,
    extension_id: str,
    user_id: str,
) -> Node:
    """GetConfig's `<Config>` with Username added between Password and LastIPAddress (8.20)."""
    return Node(
        "Config",
        attrs={"knownType": known_type},
        children=[
            leaf("AuthorizationName", authorization_name),
            leaf("Password", password),
            leaf("Username", username),
            leaf("LastIPAddress", last_ip),
            leaf("UserAgentName", user_agent),
            leaf("Enabled", enabled),
            leaf("ID", extension_id),
            leaf("UserID", user_id),
        ],
    )


# -- API extensions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Checked API fields; None = element absent (ModifyConfig keeps the stored value).

    `settings` holds only the present settings elements, already in stored form.
    """

    extension_id: str | None = None
    enabled: bool | None = None
    user_id: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()


def _plain_text(name: str, value: str) -> str:
    stripped = value.strip()
    if len(stripped) > MAX_TEXT_LENGTH:
        raise ConfigContentError(f"{name} is longer than {MAX_TEXT_LENGTH} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in stripped):
        raise ConfigContentError(f"{name} contains control characters")
    return stripped


def _optional_url(name: str, value: str) -> str:
    stripped = value.strip()
    if not stripped:
        return ""
    if len(stripped) > MAX_URL_LENGTH or any(c.isspace() or not c.isprintable() for c in stripped):
        raise ConfigContentError(f"{name} is not an absolute http(s) URL")
    try:
        urlsplit(stripped).port  # noqa: B018 - raises ValueError for a port out of range
        return validators.url(stripped)
    except ValueError as exc:
        raise ConfigContentError(f"{name} is not an absolute http(s) URL") from exc


def _user_names(value: str) -> list[str]:
    names: list[str] = []
    for part in value.split(","):
        name = _plain_text("AllowedUsers", part)
        if name and name not in names:
            names.append(name)
    return names


def _optional_number(name: str, value: str) -> str:
    if not value.strip():
        return ""
    try:
        return validators.number_string(value)
    except ValueError as exc:
        raise ConfigContentError(f"{name} is not a number-string") from exc


def _api_setting(name: str, value: str) -> Any:
    if name in ("IncomingCallUrl", "IncomingSmsUrl"):
        return _optional_url(name, value)
    if name == "AllowedUsers":
        return _user_names(value)
    if name == "DefaultCallerId":
        return _optional_number(name, value)
    return _plain_text(name, value)


def check_api_fields(fields: dict[str, str], *, require_all: bool) -> ApiConfig:
    """Validate present fields; with `require_all` (AddConfig) `ID` and `Enabled` must be there."""
    if require_all:
        missing = [name for name in API_REQUIRED if name not in fields]
        if missing:
            raise ConfigContentError(f"missing elements: {', '.join(missing)}")
    return ApiConfig(
        extension_id=check_extension_id(fields["ID"]) if "ID" in fields else None,
        enabled=_enabled(fields),
        user_id=_plain_text("UserID", fields["UserID"]) if "UserID" in fields else None,
        settings=tuple(
            (key, _api_setting(name, fields[name]))
            for name, key in API_SETTINGS.items()
            if name in fields
        ),
    )


def _stored_text(settings: dict[str, Any], key: str) -> str:
    value = settings.get(key)
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return value if isinstance(value, str) else ""


def render_api_config(
    *, extension_id: str, enabled: bool, user_id: str, settings: dict[str, Any]
) -> Node:
    """GetConfig's `<Config knownType="APIExtensionInfo">` with every element, stored values."""
    return Node(
        "Config",
        attrs={"knownType": KNOWN_TYPES["API"]},
        children=[
            *(leaf(name, _stored_text(settings, key)) for name, key in API_SETTINGS.items()),
            leaf("Enabled", enabled),
            leaf("ID", extension_id),
            leaf("UserID", user_id),
        ],
    )


# -- Ring groups, outside lines, dial plan rules -------------------------------------------
#
# These three share one mechanism: a table of `Setting`s per type. Each check turns an
# element's text into its stored form and is also asked for the empty text, which yields the
# default (or refuses, for a required element), so "absent in AddConfig", "empty in
# ModifyConfig" and "reset to default" are one rule.

SettingCheck = Callable[[str, str], Any]  # (element name, text) -> stored value
PostCheck = Callable[[str, bool, dict[str, Any]], None]  # (id, enabled, merged settings)

PASSWORD_COLUMN = None  # `Setting.key` of an element kept in the record's password column

MAX_MEMBERS = 100
MAX_PATTERN_LENGTH = 512

_LINE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_SIP_USER = re.compile(r"[^\s\x00-\x1f\x7f<>\"@:;,]{1,128}")


@dataclass(frozen=True, slots=True)
class Setting:
    """One element of a type's ConfigXML and where its checked value is stored."""

    element: str
    key: str | None  # `settings` key, or PASSWORD_COLUMN
    check: SettingCheck
    required: bool = False  # AddConfig needs it and it may never be empty


@dataclass(frozen=True, slots=True)
class Schema:
    """A settings-based extension type: its elements in GetConfig order and extra rules."""

    settings: tuple[Setting, ...]
    id_check: Callable[[str | None], str]
    enabled_required: bool = True
    has_user_id: bool = True
    post_check: PostCheck | None = None  # rules spanning elements, run on the merged result

    @property
    def fields(self) -> tuple[str, ...]:
        tail = ("Enabled", "ID", "UserID") if self.has_user_id else ("Enabled", "ID")
        return (*(s.element for s in self.settings), *tail)


@dataclass(frozen=True, slots=True)
class SettingsConfig:
    """Checked fields of a settings-based type; None = element absent (ModifyConfig keeps it).

    `password` is "" when the element was sent empty (no password).
    """

    extension_id: str | None = None
    enabled: bool | None = None
    user_id: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    password: str | None = None


def _text_setting(
    default: str = "", *, max_length: int = MAX_TEXT_LENGTH, required: bool = False
) -> SettingCheck:
    def check(name: str, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            if required:
                raise ConfigContentError(f"{name} is empty")
            return default
        if len(stripped) > max_length:
            raise ConfigContentError(f"{name} is longer than {max_length} characters")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in stripped):
            raise ConfigContentError(f"{name} contains control characters")
        return stripped

    return check


def _int_setting(default: int | str, low: int, high: int) -> SettingCheck:
    """An int in [low, high]; stored as an int, or as text when `default` is text (rules)."""

    def check(name: str, value: str) -> int | str:
        stripped = value.strip()
        if not stripped:
            return default
        # Digits only (every range here starts at 0 or above); the length cap keeps int() cheap.
        if not (stripped.isascii() and stripped.isdigit() and len(stripped) <= 12):
            raise ConfigContentError(f"{name} is not an integer from {low} to {high}")
        number = int(stripped)
        if not low <= number <= high:
            raise ConfigContentError(f"{name} is not an integer from {low} to {high}")
        return str(number) if isinstance(default, str) else number

    return check


def _choice_setting(*allowed: str, store: Callable[[str], str] = str) -> SettingCheck:
    """One of `allowed` case-insensitively, the first being the default."""

    def check(name: str, value: str) -> str:
        if not value.strip():
            return store(allowed[0])
        folded = value.strip().casefold()
        for item in allowed:
            if item.casefold() == folded:
                return store(item)
        raise ConfigContentError(f"{name} is not one of {', '.join(allowed)}")

    return check


def _bool_setting(default: bool) -> SettingCheck:
    def check(name: str, value: str) -> bool:
        word = value.strip().casefold()
        if not word:
            return default
        if word not in ("true", "false"):
            raise ConfigContentError(f"{name} is not a bool")
        return word == "true"

    return check


def _number_list(name: str, value: str) -> list[str]:
    numbers: list[str] = []
    for part in value.split(","):
        number = _optional_number(name, part)
        if number and number not in numbers:
            numbers.append(number)
    return numbers


def _members(name: str, value: str) -> list[str]:
    members: list[str] = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            member = check_extension_id(part)
        except ConfigContentError as exc:
            raise ConfigContentError(f"{name} lists an invalid extension id") from exc
        if member not in members:
            members.append(member)
    if not members:
        raise ConfigContentError(f"{name} is empty")
    if len(members) > MAX_MEMBERS:
        raise ConfigContentError(f"{name} lists more than {MAX_MEMBERS} extensions")
    return members


def _host(text: str) -> str | None:
    """The host of `text` without IPv6 brackets, or None when it is no host name or address."""
    bracketed = text.startswith("[") and text.endswith("]")
    candidate = text[1:-1] if bracketed else text
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        if bracketed or not _HOSTNAME.fullmatch(text):
            return None
        # All-numeric labels are a mistyped address (`10.0.0.256`), not a host name.
        return None if all(label.isdigit() for label in text.rstrip(".").split(".")) else text
    return candidate if address.version == 6 or not bracketed else None


def _host_setting(name: str, value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ConfigContentError(f"{name} is empty")
    host = _host(stripped)
    if host is None:
        raise ConfigContentError(f"{name} is not a host name or IP address")
    return host


def _host_port(name: str, value: str) -> str:
    """`host[:port]` (an IPv6 host in brackets when a port follows), stored as written."""
    stripped = value.strip()
    if not stripped:
        return ""
    host, port = stripped, None
    if stripped.startswith("["):
        close = stripped.find("]")
        host, rest = stripped[: close + 1], stripped[close + 1 :]
        if rest:
            port = rest.removeprefix(":") if rest.startswith(":") else "x"
    elif stripped.count(":") == 1:
        host, port = stripped.split(":")
    if _host(host) is None:
        raise ConfigContentError(f"{name} is not host[:port]")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigContentError(f"{name} has an invalid port")
    return stripped


def _sip_user(name: str, value: str) -> str:
    stripped = value.strip()
    if stripped and not _SIP_USER.fullmatch(stripped):
        raise ConfigContentError(f"{name} is not a SIP user name")
    return stripped


def _password(name: str, value: str) -> str:
    """Used exactly as written, as a SIP extension's; "" means no password."""
    if len(value) > MAX_TEXT_LENGTH:
        raise ConfigContentError(f"{name} is longer than {MAX_TEXT_LENGTH} characters")
    return value


def check_line_name(value: str | None) -> str:
    """An outside line is referred to by name (spec 8.2: `voipservice1`), not by number."""
    stripped = (value or "").strip()
    if not _LINE_NAME.fullmatch(stripped):
        raise ConfigContentError("ID missing or invalid")
    return stripped


def _ring_group_rules(group_id: str, enabled: bool, settings: dict[str, Any]) -> None:
    if group_id in settings.get("members", ()):
        raise ConfigContentError("Members lists the group itself")


def _line_rules(line_id: str, enabled: bool, settings: dict[str, Any]) -> None:
    if settings.get("register") is True and not settings.get("username"):
        raise ConfigContentError("Register is true but Username is empty")


def _dial_plan_rules(rule_id: str, enabled: bool, settings: dict[str, Any]) -> None:
    """Full validation by the dial plan's own parser, the one routing uses: the config
    layer checks only the shape, so a rule stored here is one the router can load."""
    fields = {"Name": rule_id, "Enabled": "true" if enabled else "false"}
    fields.update((name, str(settings.get(name, ""))) for name in DIAL_PLAN_RULE_FIELDS)
    try:
        rule_from_fields(fields)
    except DialPlanError as exc:
        raise ConfigContentError(str(exc)) from exc


RING_GROUP = Schema(
    settings=(
        Setting("Members", "members", _members, required=True),
        Setting("RingTime", "ring_time", _int_setting(DEFAULT_GROUP_RING_TIME, 1, 3600)),
        Setting("Strategy", "strategy", _choice_setting(*RING_STRATEGIES)),
        Setting("Fallback", "fallback", _optional_number),
    ),
    id_check=check_extension_id,
    post_check=_ring_group_rules,
)

LINE = Schema(
    settings=(
        Setting("Host", "host", _host_setting, required=True),
        Setting("Port", "port", _int_setting(DEFAULT_LINE_PORT, 1, 65535)),
        Setting("Transport", "transport", _choice_setting(*LINE_TRANSPORTS, store=str.lower)),
        Setting("Username", "username", _sip_user),
        Setting("AuthorizationName", "authorization_name", _sip_user),
        Setting("Password", PASSWORD_COLUMN, _password),
        Setting("Register", "register", _bool_setting(False)),
        Setting(
            "RegisterExpiry", "register_expiry", _int_setting(DEFAULT_REGISTER_EXPIRY, 60, 86400)
        ),
        Setting("OutboundProxy", "outbound_proxy", _host_port),
        Setting("DIDs", "dids", _number_list),
        Setting("CallerId", "caller_id", _optional_number),
        Setting("MaxChannels", "max_channels", _int_setting(0, 0, 100000)),
    ),
    id_check=check_line_name,
    has_user_id=False,
    post_check=_line_rules,
)

DIAL_PLAN_RULE = Schema(
    settings=(
        # An empty Order means "after every other rule"; the command resolves it.
        Setting("Order", "Order", _int_setting("", 0, 999999)),
        Setting("Kind", "Kind", _choice_setting("Call", "SMS", "Email")),
        Setting("From", "From", _text_setting("Any", max_length=MAX_PATTERN_LENGTH)),
        Setting(
            "Pattern",
            "Pattern",
            _text_setting(max_length=MAX_PATTERN_LENGTH, required=True),
            required=True,
        ),
        Setting("Destination", "Destination", _text_setting(required=True), required=True),
        Setting("StripDigits", "StripDigits", _int_setting("0", 0, 64)),
        Setting("AddPrefix", "AddPrefix", _text_setting()),
        Setting("CallerId", "CallerId", _text_setting()),
        Setting("RingTime", "RingTime", _int_setting("", 1, 3600)),
        Setting("OnBusy", "OnBusy", _text_setting()),
        Setting("OnNoAnswer", "OnNoAnswer", _text_setting()),
        Setting("OnNotFound", "OnNotFound", _text_setting()),
        Setting("OnError", "OnError", _text_setting()),
        Setting("TimeCondition", "TimeCondition", _text_setting(max_length=MAX_PATTERN_LENGTH)),
    ),
    id_check=check_extension_id,
    enabled_required=False,  # spec 9.2: a rule is enabled unless it says otherwise
    has_user_id=False,
    post_check=_dial_plan_rules,
)


def check_http_api_id(value: str | None) -> str:
    """The global HTTP API settings are one record, always called `HttpApi`."""
    if (value or "").strip().casefold() != HTTP_API_SETTINGS_ID.casefold():
        raise ConfigContentError(f"ID must be {HTTP_API_SETTINGS_ID}: there is only one")
    return HTTP_API_SETTINGS_ID


HTTP_API = Schema(
    settings=(
        Setting("RouteInterceptionUrl", "route_interception_url", _optional_url),
        Setting("CallChangedUrl", "call_changed_url", _optional_url),
    ),
    id_check=check_http_api_id,
    enabled_required=False,
    has_user_id=False,
)

SCHEMAS: dict[str, Schema] = {
    "RingGroup": RING_GROUP,
    "Line": LINE,
    "DialPlanRule": DIAL_PLAN_RULE,
    "HttpApi": HTTP_API,
}

# ExtensionType -> the child elements parse_config picks up.
FIELDS: dict[str, tuple[str, ...]] = {
    "SIP": SIP_FIELDS,
    "API": API_FIELDS,
    **{name: schema.fields for name, schema in SCHEMAS.items()},
}


def check_settings_fields(
    extension_type: str, fields: dict[str, str], *, require_all: bool
) -> SettingsConfig:
    """Validate present fields of a settings-based type.

    With `require_all` (AddConfig) the required elements must be present and every absent
    setting is filled in with its default, so the stored row is self-describing.
    """
    schema = SCHEMAS[extension_type]
    if require_all:
        required = ["ID", *(s.element for s in schema.settings if s.required)]
        if schema.enabled_required:
            required.insert(1, "Enabled")
        missing = [name for name in required if name not in fields]
        if missing:
            raise ConfigContentError(f"missing elements: {', '.join(missing)}")
    enabled = _enabled(fields)
    settings: list[tuple[str, Any]] = []
    password: str | None = None
    for setting in schema.settings:
        if setting.element not in fields and not require_all:
            continue
        value = setting.check(setting.element, fields.get(setting.element, ""))
        if setting.key is PASSWORD_COLUMN:
            password = value if setting.element in fields else None
        else:
            settings.append((setting.key, value))
    return SettingsConfig(
        extension_id=schema.id_check(fields["ID"]) if "ID" in fields else None,
        enabled=True if enabled is None and require_all else enabled,
        user_id=(
            _plain_text("UserID", fields["UserID"])
            if schema.has_user_id and "UserID" in fields
            else None
        ),
        settings=tuple(settings),
        password=password,
    )


def check_settings_record(
    extension_type: str, extension_id: str, enabled: bool, settings: dict[str, Any]
) -> None:
    """Rules over the whole merged configuration (ModifyConfig may change one half of a pair)."""
    post_check = SCHEMAS[extension_type].post_check
    if post_check is not None:
        post_check(extension_id, enabled, settings)


def _stored_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return ""


def render_settings_config(
    extension_type: str,
    *,
    extension_id: str,
    enabled: bool,
    user_id: str,
    settings: dict[str, Any],
    password: str | None,
    show_password: bool,
) -> Node:
    """GetConfig's `<Config>` of a settings-based type, every element, stored values.

    A password that is not shown is left out altogether (not rendered empty) so that the
    output fed back to ModifyConfig keeps it instead of clearing it.
    """
    schema = SCHEMAS[extension_type]
    children: list[Node] = []
    for setting in schema.settings:
        if setting.key is PASSWORD_COLUMN:
            if show_password:
                children.append(leaf(setting.element, password or ""))
        else:
            children.append(leaf(setting.element, _stored_value(settings.get(setting.key))))
    children += [leaf("Enabled", enabled), leaf("ID", extension_id)]
    if schema.has_user_id:
        children.append(leaf("UserID", user_id))
    return Node("Config", attrs={"knownType": KNOWN_TYPES[extension_type]}, children=children)
