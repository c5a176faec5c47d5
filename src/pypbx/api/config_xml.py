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
"""

from __future__ import annotations

import html
import re
import unicodedata
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

# ExtensionType -> knownType of its Config root (spec 8.18: `<Type>ExtensionInfo`); the order
# is ListExtensionTypes' order.
KNOWN_TYPES: dict[str, str] = {"SIP": "SIPExtensionInfo", "API": "APIExtensionInfo"}

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

FIELDS: dict[str, tuple[str, ...]] = {"SIP": SIP_FIELDS, "API": API_FIELDS}

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
