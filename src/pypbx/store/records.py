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


# -- Ring groups, outside lines and dial plan rules (written by the config commands) ------

# The `settings` keys of a ring group (spec 8.3, 10.4).
RING_GROUP_SETTING_KEYS = ("members", "ring_time", "strategy", "fallback")
RING_STRATEGIES = ("RingAll", "Hunt")
DEFAULT_GROUP_RING_TIME = 30

# The `settings` keys of an outside line (spec 8.3); its password is the record's `password`.
LINE_SETTING_KEYS = (
    "host",
    "port",
    "transport",
    "username",
    "authorization_name",
    "register",
    "register_expiry",
    "outbound_proxy",
    "dids",
    "caller_id",
    "max_channels",
)
LINE_TRANSPORTS = ("udp", "tcp")
DEFAULT_LINE_PORT = 5060
DEFAULT_REGISTER_EXPIRY = 3600

# A dial plan rule's `settings` keys: the spec 9.2 field names, every value a string.
DIAL_PLAN_RULE_FIELDS = (
    "Order",
    "Kind",
    "From",
    "Pattern",
    "Destination",
    "StripDigits",
    "AddPrefix",
    "CallerId",
    "RingTime",
    "OnBusy",
    "OnNoAnswer",
    "OnNotFound",
    "OnError",
    "TimeCondition",
)


def _require_type(record: ExtensionRecord, wanted: str) -> None:
    if record.type.casefold() != wanted.casefold():
        raise ValueError(f"extension {record.id} is of type {record.type}, not {wanted}")


def _setting_text(record: ExtensionRecord, key: str) -> str:
    value = record.settings.get(key)
    return value.strip() if isinstance(value, str) else ""


def _setting_int(record: ExtensionRecord, key: str, default: int, low: int, high: int) -> int:
    """A stored int in range, else `default` (bool is an int to Python, not to us)."""
    value = record.settings.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return default


def _setting_bool(record: ExtensionRecord, key: str, default: bool) -> bool:
    value = record.settings.get(key)
    return value if isinstance(value, bool) else default


def _setting_names(record: ExtensionRecord, key: str) -> tuple[str, ...]:
    """A stored list of names, trimmed, blanks and repeats dropped, order kept."""
    value = record.settings.get(key)
    if not isinstance(value, list | tuple):
        return ()
    names = (item.strip() for item in value if isinstance(item, str))
    return tuple(dict.fromkeys(name for name in names if name))


@dataclass(frozen=True, slots=True)
class RingGroupSettings:
    """A ring group's settings with the spec 8.3 / 10.4 defaults applied.

    `members` keeps the configured order because `Hunt` rings them one after the other in
    that order; `fallback` None means the routing rule's `OnNoAnswer` decides.
    """

    members: tuple[str, ...]
    ring_time: int  # seconds before the group counts as not answered
    strategy: str  # one of RING_STRATEGIES
    fallback: str | None


def ring_group_settings(record: ExtensionRecord) -> RingGroupSettings:
    """Typed settings of a ring group; malformed stored values count as unset.

    A group whose member list is damaged comes back with no members (it rings nobody)
    rather than raising, because `settings` is a free JSON column and routing must not crash.
    """
    _require_type(record, "RingGroup")
    strategy = _setting_text(record, "strategy")
    return RingGroupSettings(
        members=tuple(m for m in _setting_names(record, "members") if m != record.id),
        ring_time=_setting_int(record, "ring_time", DEFAULT_GROUP_RING_TIME, 1, 3600),
        strategy=strategy if strategy in RING_STRATEGIES else RING_STRATEGIES[0],
        fallback=_setting_text(record, "fallback") or None,
    )


@dataclass(frozen=True, slots=True)
class LineSettings:
    """An outside line's settings with the spec 8.3 defaults applied.

    `authorization_name` already falls back to `username` (what digest clients do when
    only one name is configured), and `max_channels` 0 means no limit.
    """

    name: str
    host: str
    port: int
    transport: str  # one of LINE_TRANSPORTS
    username: str
    authorization_name: str
    password: str | None
    register: bool
    register_expiry: int  # seconds asked for in REGISTER's Expires
    outbound_proxy: str | None  # "host[:port]"; IPv6 hosts in brackets
    dids: tuple[str, ...]  # numbers whose calls arrive on this line
    caller_id: str | None  # presented on outgoing calls; None: the caller's own
    max_channels: int

    def has_capacity(self, active_calls: int) -> bool:
        """Whether one more call may use the line while `active_calls` already do."""
        return self.max_channels == 0 or active_calls < self.max_channels


def line_settings(record: ExtensionRecord) -> LineSettings:
    """Typed settings of an outside line; malformed stored values count as unset."""
    _require_type(record, "Line")
    transport = _setting_text(record, "transport").casefold()
    username = _setting_text(record, "username")
    return LineSettings(
        name=record.id,
        host=_setting_text(record, "host"),
        port=_setting_int(record, "port", DEFAULT_LINE_PORT, 1, 65535),
        transport=transport if transport in LINE_TRANSPORTS else LINE_TRANSPORTS[0],
        username=username,
        authorization_name=_setting_text(record, "authorization_name") or username,
        password=record.password or None,
        register=_setting_bool(record, "register", False),
        register_expiry=_setting_int(record, "register_expiry", DEFAULT_REGISTER_EXPIRY, 60, 86400),
        outbound_proxy=_setting_text(record, "outbound_proxy") or None,
        dids=_setting_names(record, "dids"),
        caller_id=_setting_text(record, "caller_id") or None,
        max_channels=_setting_int(record, "max_channels", 0, 0, 100000),
    )


def dial_plan_rule_fields(record: ExtensionRecord) -> dict[str, str]:
    """A dial plan rule as the spec 9.2 fields, all strings, ready for the rule parser.

    `Name` is the record id and `Enabled` the record's flag; a field stored as anything
    but a string (a hand-edited row) comes back empty, i.e. as its default.
    """
    _require_type(record, "DialPlanRule")
    fields = {"Name": record.id, "Enabled": "true" if record.enabled else "false"}
    for name in DIAL_PLAN_RULE_FIELDS:
        value = record.settings.get(name)
        fields[name] = value.strip() if isinstance(value, str) else ""
    return fields


# The global HTTP API settings (ExtensionType `HttpApi`): one record with this id whose
# `settings` hold the notification URLs that override the TOML `[http_api]` ones.
HTTP_API_SETTINGS_ID = "HttpApi"


# Where a stored text message is: waiting for its recipient, or one of the final states.
MESSAGE_PENDING = "pending"
MESSAGE_FINAL_STATES = ("delivered", "expired", "failed")
MESSAGE_STATES = (MESSAGE_PENDING, *MESSAGE_FINAL_STATES)


@dataclass(slots=True)
class MessageRecord:
    """One text message (SIP MESSAGE from a phone, or SendSms) on its way to an extension.

    Kept after it reaches a final state so the SmsId handed out stays answerable; `reason`
    says why the last attempt failed (e.g. '480 Temporarily Unavailable').
    """

    id: str  # the SmsId: a lowercase GUID
    sender: str  # number shown as the From user
    recipient: str  # the extension it is for
    content_type: str  # the Content-Type header value as received ('' when there was no body)
    body: bytes
    expires_at: datetime  # still pending then: dropped as expired
    sender_name: str = ""  # display name of the From header
    dialed: str = ""  # the recipient number as given (IncomingSMS / SMSDeliveryReport Recipient)
    api_extension: str = ""  # the API extension of a SendSms
    report_url: str | None = None  # SendSms DeliveryReportURL
    state: str = MESSAGE_PENDING
    attempts: int = 0
    reason: str = ""
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    remote_id: str | None = None  # the SMSC's message id once an SMPP submit was accepted
