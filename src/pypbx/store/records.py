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
