"""ConfigXML of the configuration commands (spec 8.19-8.21): decode, parse, check, render.

ConfigXML arrives from the network, so it is parsed with defusedxml with DTDs forbidden:
a config document has no use for one, and entity-expansion bombs live there.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)
from defusedxml.ElementTree import fromstring

from pypbx.api.xmlout import Node, leaf

# ExtensionType -> knownType of its Config root (spec 8.18: `<Type>ExtensionInfo`).
KNOWN_TYPES: dict[str, str] = {"SIP": "SIPExtensionInfo"}

SIP_FIELDS = ("AuthorizationName", "Password", "Username", "Enabled", "ID", "UserID")

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
    fields: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and child.tag in SIP_FIELDS and child.tag not in fields:
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
    enabled: bool | None = None
    if "Enabled" in fields:
        word = fields["Enabled"].strip().casefold()
        if word not in ("true", "false"):
            raise ConfigContentError("Enabled is not a bool")
        enabled = word == "true"
    return SipConfig(
        extension_id=check_extension_id(fields["ID"]) if "ID" in fields else None,
        authorization_name=_required_text(fields, "AuthorizationName"),
        # A password is used exactly as written: surrounding spaces may be part of it.
        password=_required_text(fields, "Password", strip=False),
        username=_required_text(fields, "Username"),
        enabled=enabled,
        user_id=_required_text(fields, "UserID"),
    )


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
