"""The abuse protections the `[security]` settings configure, built in one place.

SIP and the HTTP API get separate ban lists from the same `auth_ban_*` settings: one
policy to configure, but a phone with a stale password must not lock an office's CRM out
of the API (nor a mistyping API user its phones out of SIP) when they share an address.
Flood limits ban into the SIP list, and the one ignore list exempts from everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from pypbx.config import SecuritySettings
from pypbx.pbx.abuse import FailureBans
from pypbx.pbx.call_limits import CallLimits
from pypbx.pbx.flood import FloodLimits, Rate

__all__ = ["Protection", "protection"]


@dataclass(frozen=True, slots=True)
class Protection:
    sip_bans: FailureBans
    api_bans: FailureBans
    flood: FloodLimits
    calls: CallLimits


def _bans(settings: SecuritySettings) -> FailureBans:
    return FailureBans(
        max_failures=settings.auth_ban_failures,
        window=settings.auth_ban_window,
        ban_seconds=settings.auth_ban_seconds,
        ignore=settings.auth_ban_ignore,
    )


def protection(settings: SecuritySettings) -> Protection:
    sip_bans = _bans(settings)
    flood = FloodLimits(
        invite=Rate(settings.invite_rate, settings.invite_burst),
        register=Rate(settings.register_rate, settings.register_burst),
        other=Rate(settings.other_rate, settings.other_burst),
        ignore=settings.auth_ban_ignore,
        bans=sip_bans,
        ban_after=float(settings.flood_ban_after),
        ban_seconds=float(settings.flood_ban_seconds),
    )
    calls = CallLimits(settings.max_calls, settings.max_calls_per_extension)
    return Protection(sip_bans=sip_bans, api_bans=_bans(settings), flood=flood, calls=calls)
