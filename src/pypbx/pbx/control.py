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


class InvalidMediaRequestError(ValueError):
    """A media parameter names something unusable: a missing file, a failed download, a path
    outside the allowed directories (API code 302 naming `param`; `reason` says what)."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason


class ApiExtensionError(LookupError):
    """The API extension is unknown, disabled or not permitted to the user (API code 401)."""


class CallFailedError(RuntimeError):
    """A `Call` failed before it rang (API code 402 with the result state)."""

    def __init__(self, dialed: str, state: str) -> None:
        super().__init__(f"call to {dialed} failed: {state}")
        self.dialed = dialed
        self.state = state


@dataclass(frozen=True, slots=True)
class CallRequest:
    """The Call command's parameters (spec 8.1); None = the API extension's default."""

    api_extension: str
    dialed: str
    caller_id: str | None = None
    caller_display_name: str | None = None
    url: str | None = None
    error_url: str | None = None
    response_ozml: str | None = None
    finished_url: str | None = None
    ring_time: int | None = None


@dataclass(frozen=True, slots=True)
class AlarmRequest:
    """SendAlarmNotification's parameters (http-api 8.16, OzML 6.22), as given."""

    phone_number: str
    account_number: str
    event_code: str
    partition_number: str
    zone_number: str
    event_qualifier: str = "NewEvent"
    api_extension: str | None = None
    result_url: str | None = None


class AlarmRequestError(ValueError):
    """A parameter that cannot make a Contact ID message (API code 302 naming `param`)."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecordRequest:
    """The Record command's options (spec 8.11)."""

    format: str = "mp3"  # 'mp3' or 'wav'
    finished_url: str | None = None  # where RecordCompleted is POSTed
    duration: int | None = None  # seconds
    inactivity: int | None = None  # seconds of no voice from either party
    finish_digits: str = ""
    record_path: str | None = None  # a directory under the recording roots
    stereo: bool = False  # pypbx addition: caller left, callee right


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

    async def blind_transfer(
        self, call_id: str, target: str, transferor_party: str, finished_url: str | None = None
    ) -> None:
        """The `transferor_party` ('caller'/'callee') leaves; the other party is put through
        to `target` in a new call. Raises UnroutableDestinationError for a bad target. When
        the new call ends, `finished_url` gets a TransferFinished report (spec 4.12)."""
        ...

    async def attended_transfer(self, transferred_id: str, target_id: str) -> None:
        """Connect the other parties of two calls that share one party, who leaves both.

        Raises CallNotFoundError (with the unknown id) or InappropriateStateError."""
        ...

    async def play(
        self, call_id: str, party: str, audio_file: str, *, repeat: bool, timeout: int | None
    ) -> None:
        """Play a WAV/MP3 file or URL to 'caller', 'callee' or 'all', mixed over the
        conversation, replacing what pypbx was playing to that party.

        Raises InvalidMediaRequestError('AudioFile', ...) when the audio cannot be had."""
        ...

    async def speak(
        self, call_id: str, party: str, text: str, *, language: str | None, voice: str | None
    ) -> None:
        """Like `play`, with speech synthesised from `text`."""
        ...

    async def record(self, call_id: str, request: RecordRequest) -> None:
        """Start recording the call (InappropriateStateError if it is already recorded)."""
        ...

    async def send_dtmf(self, call_id: str, party: str, keys: str) -> None:
        """Queue key presses toward the party (RFC 4733, or SIP INFO without it)."""
        ...

    async def call(self, request: CallRequest, username: str | None) -> str:
        """An API extension dials out; returns the new CallId once the call rings. Raises
        ApiExtensionError (401) or CallFailedError (402)."""
        ...

    async def send_alarm(self, request: AlarmRequest, username: str | None) -> None:
        """An API extension calls a number and sends a Contact ID alarm in the background
        (the outcome goes to ResultUrl). Raises AlarmRequestError (302) or
        ApiExtensionError (401) before anything is dialled."""
        ...

    def is_registered(self, extension_id: str) -> bool:
        """True when the extension has at least one live registration."""
        ...

    async def extension_changed(self, extension_id: str) -> None:
        """An extension was modified or removed: drop its bindings if credentials changed,
        it was disabled, or it is gone (active calls keep running)."""
        ...
