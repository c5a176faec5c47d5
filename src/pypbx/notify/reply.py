"""The outcome of one notification, as the rest of the PBX sees it.

Network and HTTP failures are values, not exceptions: a live call that asked for OzML has to fall
back to its default behaviour (spec 2.2) whatever went wrong, so the caller only needs `ok`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NotificationReply:
    """What came back from the application.

    `ok` is True only for a 2xx whose body was read completely within the size limit. `status` is
    None when no HTTP response arrived (connection failure, timeout, invalid URL, dropped report).
    `body` is the reply text (the OzML), also kept for non-2xx replies for logging. `error` says
    why `ok` is False. `elapsed` is the duration of the HTTP exchange in seconds (0.0 if none took
    place); time spent waiting in a call's queue is not included.
    """

    ok: bool
    status: int | None
    body: str
    error: str | None
    elapsed: float


def failed(
    error: str, *, status: int | None = None, body: str = "", elapsed: float = 0.0
) -> NotificationReply:
    """A reply for a notification that did not succeed."""
    return NotificationReply(ok=False, status=status, body=body, error=error, elapsed=elapsed)
