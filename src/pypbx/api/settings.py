"""Configuration of the HTTP API surface.

Kept as a plain dataclass so the CLI/TOML layer can build it and tests can construct it
directly; nothing here reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Settings of the Ozeki-compatible HTTP API (spec sections 2, 5 and 8.17-8.22)."""

    # Section 5.5: authentication is on unless explicitly switched off.
    auth_required: bool = True
    # Section 5.2: empty allowed list = allow all; denied entries are carved out of it.
    allowed_networks: list[str] = field(default_factory=list)
    denied_addresses: list[str] = field(default_factory=list)
    # O10 ListExtensions shows ids as `<number>@<domain>`.
    domain: str = "localhost"
    # Realm used to precompute the SIP digest HA1 values stored with each extension; it must
    # equal the realm the registrar challenges with, or stored HA1s will never match.
    realm: str = "localhost"
    # When False only HA1 values are stored, and GetConfig returns an empty Password.
    keep_sip_passwords: bool = True
    # Time zone for "local time" in responses; None means the host's local zone.
    timezone: tzinfo | None = None
    # Recordings are served below /recordings/ with the API's authentication; None: not served.
    recordings_dir: Path | None = None
    # The API extension `Call`, `SendSms` and `SendEmail` use when ApiExtension is omitted.
    default_api_extension: str | None = None
