"""SIP session timers (RFC 4028), sans-I/O: header parsing, negotiation and deadlines.

Why session timers at all: a phone that loses power or network never sends BYE, and a B2BUA
would hold both legs (and their RTP ports) for ever. With a timer, one side (the refresher)
re-INVITEs or UPDATEs the dialog every half interval; the other side ends the call when no
refresh arrives in time. This module decides who refreshes, what to answer and when each
deadline falls; the caller supplies the clock (`now`) and does all sending.

Roles: the `refresher` parameter names the UAC or UAS *of the transaction that carried the
header*, not of the dialog, so the same leg's refresher reads "uac" in one re-INVITE and "uas"
in a response to the peer's. `SessionTimer.we_refresh` is the role-free view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pypbx.sip.headers import Headers

__all__ = [
    "MIN_SE_FLOOR",
    "OPTION_TAG",
    "Accept",
    "Policy",
    "SessionExpires",
    "SessionTimer",
    "SessionTimerError",
    "TimerHeaders",
    "TooSmall",
    "allows_method",
    "answer_request",
    "negotiated",
    "option_tags",
    "parse_min_se",
    "request_headers",
    "retry_interval",
    "unsupported",
]

OPTION_TAG = "timer"
MIN_SE_FLOOR = 90  # §4/§5: the smallest Min-SE a deployment should use (tests go lower)
DEFAULT_SESSION_EXPIRES = 1800  # §4: the RECOMMENDED Session-Expires
MAX_INTERVAL = 2**31 - 1  # delta-seconds (RFC 3261 §25.1) beyond this are clamped
GIVE_UP_MARGIN = 32.0  # §10: the non-refresher ends min(32 s, interval / 3) before expiry

Refresher = Literal["uac", "uas"]


class SessionTimerError(ValueError):
    """A Session-Expires or Min-SE header value is malformed (answer 400)."""


def _delta_seconds(text: str, what: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise SessionTimerError(f"Bad {what}: {text.strip()!r} is not delta-seconds")
    return min(int(value), MAX_INTERVAL)


@dataclass(frozen=True)
class SessionExpires:
    """A Session-Expires value: the interval in seconds and, optionally, who refreshes."""

    interval: int
    refresher: Refresher | None = None

    @classmethod
    def parse(cls, text: str) -> SessionExpires:
        value, _, rest = text.partition(";")
        interval = _delta_seconds(value, "Session-Expires")
        if interval < 1:
            raise SessionTimerError("Bad Session-Expires: the interval must be at least 1 s")
        refresher: Refresher | None = None
        for param in rest.split(";"):
            name, _, raw = param.partition("=")
            if name.strip().lower() != "refresher":
                continue  # generic parameters are allowed and ignored
            token = raw.strip().lower()
            if token == "uac":
                refresher = "uac"
            elif token == "uas":
                refresher = "uas"
            else:
                raise SessionTimerError(f"Bad Session-Expires: refresher {raw.strip()!r}")
        return cls(interval, refresher)

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.interval)
        return f"{self.interval};refresher={self.refresher}"


def parse_min_se(text: str) -> int:
    """A Min-SE value (parameters after ';' are allowed and ignored)."""
    return _delta_seconds(text.partition(";")[0], "Min-SE")


def option_tags(values: Iterable[str]) -> list[str]:
    """The option tags of Supported/Require header values, lowercased, in order."""
    return [tag.strip().lower() for value in values for tag in value.split(",") if tag.strip()]


def unsupported(require: Iterable[str], supported: Iterable[str] = (OPTION_TAG,)) -> list[str]:
    """The option tags a Require lists that we do not support (for 420's Unsupported)."""
    known = {tag.lower() for tag in supported}
    return [tag for tag in option_tags(require) if tag not in known]


def allows_method(headers: Headers, method: str) -> bool:
    """Whether the peer's Allow header lists `method` (no Allow: we cannot know, so no)."""
    return method.upper() in (tag.upper() for tag in option_tags(headers.get_all("Allow")))


@dataclass(frozen=True)
class TimerHeaders:
    """What one request or response says about session timers."""

    session_expires: SessionExpires | None = None
    min_se: int | None = None
    supported: bool = False  # Supported or Require names "timer"
    required: bool = False  # Require names "timer"

    @classmethod
    def read(cls, headers: Headers) -> TimerHeaders:
        """Parse the timer headers; SessionTimerError names a malformed one."""
        se_text = headers.get("Session-Expires")
        min_se_text = headers.get("Min-SE")
        require = option_tags(headers.get_all("Require"))
        supported = option_tags(headers.get_all("Supported"))
        return cls(
            session_expires=SessionExpires.parse(se_text) if se_text is not None else None,
            min_se=parse_min_se(min_se_text) if min_se_text is not None else None,
            supported=OPTION_TAG in supported or OPTION_TAG in require,
            required=OPTION_TAG in require,
        )


@dataclass(frozen=True)
class Policy:
    """Our side's settings: the interval we ask for (0: never ask) and the shortest we take."""

    session_expires: int = DEFAULT_SESSION_EXPIRES
    min_se: int = MIN_SE_FLOOR


@dataclass(frozen=True)
class TooSmall:
    """Reject the request with 422 and this Min-SE (§9)."""

    min_se: int


@dataclass(frozen=True)
class Accept:
    """Go ahead; the 2xx carries `session_expires` (None: no timer) and maybe Require: timer."""

    session_expires: SessionExpires | None
    require: bool


def answer_request(request: TimerHeaders, policy: Policy) -> TooSmall | Accept:
    """The UAS decision for an INVITE, re-INVITE or UPDATE (§9).

    A requested interval below our Min-SE is refused with 422. Otherwise it is honoured, and
    the refresher is the one the request named, else the UAC if it supports timers (the phone
    refreshes, so a vanished phone stops refreshing), else us: a UAC without timer support
    cannot be asked to refresh. A UAC that supports timers but asked for none gets our
    interval, never below the Min-SE it sent.
    """
    asked = request.session_expires
    if asked is not None:
        if asked.interval < policy.min_se:
            return TooSmall(policy.min_se)
        refresher: Refresher = asked.refresher or "uac"
        if not request.supported:
            refresher = "uas"
        return Accept(SessionExpires(asked.interval, refresher), require=request.supported)
    if request.supported and policy.session_expires > 0:
        interval = max(policy.session_expires, policy.min_se, request.min_se or 0)
        return Accept(SessionExpires(interval, "uac"), require=True)
    return Accept(None, require=False)


def request_headers(
    interval: int, min_se: int, *, refresher: Refresher | None
) -> list[tuple[str, str]]:
    """Headers for a request we send: an initial INVITE (no refresher: the UAS chooses) or a
    refresh (refresher="uac": we keep refreshing). Min-SE never exceeds the interval."""
    return [
        ("Supported", OPTION_TAG),
        ("Session-Expires", str(SessionExpires(interval, refresher))),
        ("Min-SE", str(min(min_se, interval))),
    ]


def retry_interval(current: int, response: TimerHeaders, *, ceiling: int = 86400) -> int | None:
    """The interval to ask for after a 422 (§7.3): its Min-SE, if that is a usable increase.

    None when the 422 gives no Min-SE, one no larger than what we asked for (retrying would
    loop), or one beyond `ceiling` (a day: such a peer is not worth keeping a timer for).
    """
    wanted = response.min_se
    if wanted is None or wanted <= current or wanted > ceiling:
        return None
    return wanted


def negotiated(
    session_expires: SessionExpires | None, *, we_sent_request: bool, now: float
) -> SessionTimer | None:
    """The timer a 2xx establishes (None: none). `we_sent_request` tells which end the
    refresher's "uac"/"uas" means. A 2xx must name its refresher; if it does not, we
    refresh, since refreshing needlessly costs a request and not refreshing costs the call."""
    if session_expires is None:
        return None
    refresher = session_expires.refresher or ("uac" if we_sent_request else "uas")
    we_refresh = (refresher == "uac") == we_sent_request
    return SessionTimer(session_expires.interval, we_refresh, now)


@dataclass
class SessionTimer:
    """One dialog's running timer, seen from our side."""

    interval: int
    we_refresh: bool
    refreshed_at: float

    @property
    def deadline(self) -> float:
        """When to act: send a refresh at half the interval (§7.4), or, when the peer refreshes,
        give up min(32 s, interval / 3) before the session would expire (§10)."""
        if self.we_refresh:
            return self.refreshed_at + self.interval / 2
        margin = min(GIVE_UP_MARGIN, self.interval / 3)
        return self.refreshed_at + self.interval - margin

    @property
    def expires_at(self) -> float:
        return self.refreshed_at + self.interval

    def due(self, now: float) -> Literal["refresh", "expire"] | None:
        """What the deadline calls for at `now` (None: not yet)."""
        if now < self.deadline:
            return None
        return "refresh" if self.we_refresh else "expire"

    def refreshed(self, now: float) -> None:
        """A refresh succeeded (ours, or the peer's re-INVITE/UPDATE): start a new interval."""
        self.refreshed_at = now
