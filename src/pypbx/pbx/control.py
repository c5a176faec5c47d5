"""What the HTTP API (and later OzML) may ask of the PBX: the seam between `api/` and `pbx/`.

`api/` parses parameters, checks authentication and renders XML; every operation on calls
and extensions is a method of an object implementing `PbxControl`, so the same operation
serves HTTP commands and OzML verbs alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pypbx.pbx.states import CallState


class CallNotFoundError(LookupError):
    """No active call has this id (API code 601)."""


class InappropriateStateError(RuntimeError):
    """The call exists but its state does not allow the operation (API code 303)."""


class UnroutableDestinationError(ValueError):
    """The number cannot be routed at all: unknown, disabled or unreachable (API code 302)."""


@dataclass(frozen=True, slots=True)
class ActiveCallInfo:
    """A snapshot of one active call, in the terms ListActiveCalls reports."""

    call_id: str
    state: CallState
    source: str  # caller's number
    caller_id: str  # caller display name if known, else the caller number
    destination: str  # callee's number
    caller_dialed: str  # number the caller dialled
    callee_dialed: str  # number dialled towards the callee leg
    start_time: datetime  # timezone-aware
    ring_duration: float  # seconds from start to answer (or now while ringing)
    talk_duration: float  # seconds since answer (0 while ringing)


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    """Where an extension is registered from, for ListExtensions/GetConfig."""

    extension_id: str
    contact: str
    source: str  # "ip:port (Udp)" as GetConfig's LastIPAddress shows it
    user_agent: str
    expires_at: datetime


class PbxControl(Protocol):
    """Operations the API layer may invoke on the running PBX."""

    def active_calls(self) -> list[ActiveCallInfo]:
        """Active (non-final) calls ordered by start time."""
        ...

    async def hangup(self, call_id: str) -> None:
        """End the call (Cancelled if ringing, else Completed).

        Raises CallNotFoundError or InappropriateStateError.
        """
        ...

    async def hold(self, call_id: str) -> None:
        """Both parties hear hold music instead of each other (InCall -> Hold)."""
        ...

    async def unhold(self, call_id: str) -> None:
        """Reconnect a call held by `hold` (Hold -> InCall)."""
        ...

    async def forward(self, call_id: str, destination: str) -> None:
        """Ring `destination` instead of the current callee of a ringing call.

        Raises UnroutableDestinationError when the destination cannot be reached at all.
        """
        ...

    async def blind_transfer(self, call_id: str, target: str, transferor_party: str) -> None:
        """The `transferor_party` ('caller'/'callee') leaves; the other party is put through
        to `target` in a new call. Raises UnroutableDestinationError for a bad target."""
        ...

    async def attended_transfer(self, transferred_id: str, target_id: str) -> None:
        """Connect the other parties of two calls that share one party, who leaves both.

        Raises CallNotFoundError (with the unknown id) or InappropriateStateError."""
        ...

    def is_registered(self, extension_id: str) -> bool:
        """True when the extension has at least one live registration."""
        ...

    async def extension_changed(self, extension_id: str) -> None:
        """An extension was modified or removed: drop its bindings if credentials changed,
        it was disabled, or it is gone (active calls keep running)."""
        ...
