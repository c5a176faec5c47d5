"""The records the store hands out and takes in.

Plain dataclasses, so that `api/` and `pbx/` never see SQLAlchemy types and the store can
change backend or schema without touching its callers. Every datetime is timezone-aware
UTC on the way out; on the way in any aware datetime is accepted (and converted), while a
naive one is refused, because guessing its zone is how call history ends up hours off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the store's only clock)."""
    return datetime.now(UTC)


class AlreadyExistsError(Exception):
    """A record with this key already exists (extension id, username, call id)."""


class NotFoundError(LookupError):
    """The record to update, or the extension a binding refers to, does not exist."""


@dataclass(slots=True)
class ExtensionRecord:
    """One configured extension; `type` selects how `settings` is read."""

    id: str
    type: str  # 'SIP' now; later 'API', 'IVR', 'RingGroup', 'Line', ...
    enabled: bool = True
    user_id: str = ""
    username: str = ""
    authorization_name: str = ""
    # Kept so GetConfig can return it (Ozeki contract); None when the site keeps only HA1.
    password: str | None = None
    ha1_md5: str | None = None
    ha1_sha256: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    last_ip: str = ""
    user_agent: str = ""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class OfficeUserRecord:
    """An HTTP API / office user; the password is only ever stored hashed."""

    username: str
    password_hash: str
    may_use_api: bool = True
    is_admin: bool = False
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class BindingRecord:
    """One registered contact of an extension (a REGISTER binding)."""

    extension_id: str
    contact: str  # the Contact URI as registered
    source: str  # 'ip:port' the REGISTER came from
    transport: str  # 'udp' | 'tcp'
    expires_at: datetime
    call_id: str
    cseq: int
    user_agent: str = ""
    instance_id: str = ""


@dataclass(slots=True)
class CallHistoryRecord:
    """One call in the history; `state` None means the call is still in progress."""

    call_id: str
    start_time: datetime
    answer_time: datetime | None
    end_time: datetime | None
    direction: str
    source: str
    destination: str
    dialed: str
    caller_id: str
    state: str | None  # a HistoryResult value
    type: str = "Audio"
    ring_duration: float = 0.0
    talk_duration: float = 0.0


@dataclass(slots=True)
class HistoryQuery:
    """GetCallHistory filters; None means "no filter", and filters combine with AND."""

    from_time: datetime | None = None  # inclusive lower bound on start_time
    to_time: datetime | None = None  # exclusive upper bound on start_time
    general: str | None = None
    direction: str | None = None
    source: str | None = None
    destination: str | None = None
    state: str | None = None
    dialed: str | None = None
    caller_id: str | None = None
    call_id: str | None = None
    type: str | None = None
    page: int = 0
    rows_per_page: int = 20


# The `settings` keys of an API extension (spec 7 data model), written by the config commands.
API_SETTING_KEYS = (
    "incoming_call_url",
    "incoming_sms_url",
    "allowed_users",
    "default_caller_id",
    "default_display_name",
)


@dataclass(frozen=True, slots=True)
class ApiExtensionSettings:
    """An API extension's settings with the spec 7 defaults already applied.

    The PBX routes by these, so the defaults live here once: the SMS URL falls back to the
    call URL, caller id and display name to the extension number, and an empty user list
    means every API user may act as the extension.
    """

    incoming_call_url: str | None
    incoming_sms_url: str | None
    allowed_users: tuple[str, ...]
    default_caller_id: str
    default_display_name: str

    def allows(self, username: str) -> bool:
        """Whether the office user `username` may use the extension (names match exactly)."""
        return not self.allowed_users or username in self.allowed_users


def api_extension_settings(record: ExtensionRecord) -> ApiExtensionSettings:
    """Typed settings of an API extension; malformed stored values count as unset.

    `settings` is a free JSON column, so a hand-edited row must not crash call routing.
    """
    if record.type.casefold() != "api":
        raise ValueError(f"extension {record.id} is of type {record.type}, not API")

    def text(key: str) -> str:
        value = record.settings.get(key)
        return value.strip() if isinstance(value, str) else ""

    users = record.settings.get("allowed_users")
    allowed = (
        tuple(u.strip() for u in users if isinstance(u, str) and u.strip())
        if isinstance(users, list | tuple)
        else ()
    )
    call_url = text("incoming_call_url") or None
    return ApiExtensionSettings(
        incoming_call_url=call_url,
        incoming_sms_url=text("incoming_sms_url") or call_url,
        allowed_users=allowed,
        default_caller_id=text("default_caller_id") or record.id,
        default_display_name=text("default_display_name") or record.id,
    )
