"""The call-state vocabularies of the Ozeki API, kept in one place.

Ozeki exposes a call through three vocabularies (public state, routing state, history
result); pypbx keeps one lifecycle per call and derives the words each surface shows
from it, so the surfaces can never disagree.
"""

from __future__ import annotations

from enum import StrEnum


class CallState(StrEnum):
    """Public call state (ListActiveCalls `CallState`, CallChanged notification)."""

    RINGING = "Ringing"
    ANSWERED = "Answered"  # transient: reported once in notifications, never listed
    IN_CALL = "InCall"
    HOLD = "Hold"
    TRANSFERRED = "Transferred"
    CANCELLED = "Cancelled"
    BUSY = "Busy"
    ERROR = "Error"
    COMPLETED = "Completed"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = {
    CallState.TRANSFERRED,
    CallState.CANCELLED,
    CallState.BUSY,
    CallState.ERROR,
    CallState.COMPLETED,
}


class HistoryResult(StrEnum):
    """Call-history result state (GetCallHistory `State`)."""

    CALLER_HUNG_UP = "CallerHungUp"
    CALLEE_HUNG_UP = "CalleeHungUp"
    TRANSFER_COMPLETED = "TransferCompleted"
    TRANSFER_FAILED = "TransferFailed"
    REDIRECTED = "Redirected"
    NOT_FOUND = "NotFound"
    BUSY = "Busy"
    REJECTED = "Rejected"
    CANCELLED = "Cancelled"
    NOT_ANSWERED = "NotAnswered"
    ERROR = "Error"
    ABORTED = "Aborted"


class RoutingState(StrEnum):
    """Routing call state (RoutingInterception `LastCallState`)."""

    CALLING = "Calling"
    NO_ANSWER = "NoAnswer"
    BUSY = "Busy"
    NOT_FOUND = "NotFound"
    ERROR = "Error"
