"""What the OzML interpreter needs from the PBX, and from the notification sender.

The interpreter is the sans-I/O half of OzML: it decides *what* happens to a call and in which
order (spec 5.3), while `CallActions` does it. The split lets the whole execution model be
tested against an in-memory recorder, and keeps one implementation of each operation in the
PBX: the methods follow the HTTP command parameters (http-api.md section 8) and map onto
`pypbx.pbx.control.PbxControl` wherever that already has the operation.

Contract for implementers:

* Call-bound methods raise `CallGone(call_id)` when that call has ended (the far party hung
  up, or it was never there). In an API-extension script this stops the script; in a 3PCC
  script only the verb is skipped.
* A refused or impossible operation (unroutable number, missing audio file, wrong call
  state, unsupported feature) raises `ActionFailed(reason)`: the interpreter logs it and goes
  on with the next verb, which is how OzML treats failures (e.g. a failed BlindTransfer is
  followed by an apology, spec 6.9).
* Blocking methods (`speak`, `play` with `wait=True`, `beep`, `delay`, `record`,
  `send_dtmf`, `next_digit`, `receive_alarm`) return when the operation is over. Cancelling
  the awaiting task must stop the operation at once and quietly: that is how a key press
  interrupts a prompt (UserInput barge-in, spec 6.5 step 1).
* `next_digit` waits for the next key of the caller's DTMF buffer. A cancelled `next_digit`
  must not consume a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pypbx.ozml.verbs import AudioFormat, LegName, PartyName

RejectReason = Literal["busy", "unavailable"]


class CallGone(Exception):
    """The call has ended; nothing more can be done to it."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id} has ended")
        self.call_id = call_id


class ActionFailed(Exception):
    """The PBX could not carry out one verb; the script goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """Record's parameters (spec 6.4); seconds, None = no limit / off."""

    format: AudioFormat = "mp3"
    finished_url: str | None = None
    duration: float | None = None
    inactivity: float | None = None
    finish_digits: str = ""
    record_path: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """A finished recording, in the terms of the RecordCompleted notification (spec 4.3).

    `reason` is `Duration`, `Inactivity`, `FinishDigit` or `Hangup`.
    """

    record_url: str
    format: str
    duration: float
    reason: str
    finish_digit: str | None = None

    @property
    def call_ended(self) -> bool:
        return self.reason.casefold() == "hangup"


@dataclass(frozen=True, slots=True)
class AlarmMessage:
    """A received Ademco Contact ID message (spec 6.23)."""

    account: str
    event_qualifier: str
    event_code: str
    event_name: str
    partition: str
    zone: str


class CallActions(Protocol):
    """Operations on calls and messages, one per OzML verb (plus answer/reject/digits)."""

    async def answer(self, call_id: str) -> None:
        """Answer a ringing call to an API extension (IncomingCall, spec 4.4 step 2)."""
        ...

    async def reject(self, call_id: str, reason: RejectReason) -> None:
        """Refuse a ringing call: `busy` = the Reject verb (SIP 486), `unavailable` = an empty
        or failed IncomingCall reply (SIP 480)."""
        ...

    async def hangup(self, call_id: str) -> None:
        """End the call (PbxControl.hangup)."""
        ...

    async def speak(
        self, call_id: str, party: PartyName, text: str, *, language: str | None, voice: str | None
    ) -> None:
        """Say `text` to the party; returns when spoken. None = the server's default."""
        ...

    async def play(
        self,
        call_id: str,
        party: PartyName,
        audio_file: str,
        *,
        repeat: bool,
        timeout: float | None,
        wait: bool,
    ) -> None:
        """Play a file or URL to the party. With `wait` return when playback ends (repeat:
        at `timeout`, on cancellation, or never while the call lasts); without, once it
        started (a repeating Play in a 3PCC script runs in the background, spec 6.2)."""
        ...

    async def beep(self, call_id: str, party: PartyName) -> None:
        """A 200 ms 1 kHz tone (Ozeki 10 Beep)."""
        ...

    async def delay(self, call_id: str | None, seconds: float) -> None:
        """Wait; with a call id, raise CallGone as soon as that call ends."""
        ...

    async def record(self, call_id: str, party: LegName, options: RecordOptions) -> RecordingResult:
        """API-extension Record: record what `party` says until a stop condition or hang-up
        (a hang-up is a result with reason `Hangup`, not CallGone). Does not send
        RecordCompleted: the interpreter does, to run the reply inline."""
        ...

    async def start_recording(self, call_id: str, options: RecordOptions) -> None:
        """3PCC Record: start recording both parties and return; the PBX itself sends
        RecordCompleted to `options.finished_url` when the call ends (PbxControl.record)."""
        ...

    def clear_digits(self, call_id: str) -> None:
        """Forget the keys pressed so far on this call."""
        ...

    async def next_digit(self, call_id: str, timeout: float | None) -> str | None:
        """The next key (`0`-`9`, `*`, `#`, `A`-`D`) from the buffer, waiting up to `timeout`
        seconds (None = without limit, 0 = only what is buffered); None on timeout."""
        ...

    async def send_dtmf(self, call_id: str, party: PartyName, keys: str) -> None:
        """Send the keys to the party; returns when sent."""
        ...

    async def blind_transfer(
        self,
        call_id: str,
        target: str,
        transferor_party: LegName,
        *,
        finished_url: str | None,
        timeout: float | None,
    ) -> bool:
        """`transferor_party` leaves, the other party is put through to `target`. With a
        `timeout` (API extension form) wait until the target answers (True) or the attempt
        fails or the timeout passes (False, the call stays as it was); without, return True
        once the transfer has started (3PCC form)."""
        ...

    async def attended_transfer(
        self, transferred_call_id: str, target_call_id: str, transferor_party: LegName | None
    ) -> None:
        """Join the other parties of two calls that share the transferor (PbxControl)."""
        ...

    async def forward(self, call_id: str, destination: str) -> None:
        """Ring `destination` instead of the current callee of a ringing call."""
        ...

    async def hold(self, call_id: str) -> None:
        """Both parties on hold (InCall -> Hold)."""
        ...

    async def unhold(self, call_id: str) -> None:
        """Back from `hold` (Hold -> InCall)."""
        ...

    async def call(
        self,
        *,
        dialed: str,
        api_extension: str,
        caller_id: str | None,
        caller_display_name: str | None,
        url: str | None,
        error_url: str | None,
        response_ozml: str | None,
        finished_url: str | None,
        ring_time: int,
    ) -> None:
        """Start a new call from the API extension and return at once (the HTTP Call
        command); None = the API extension's defaults. The new call gets its own script."""
        ...

    async def send_sms(
        self,
        *,
        recipient: str,
        message: str,
        sender: str | None,
        api_extension: str | None,
        delivery_report_url: str | None,
    ) -> None:
        """Queue an SMS (the HTTP SendSms command); returns at once."""
        ...

    async def send_email(
        self,
        *,
        recipient: str,
        subject: str,
        message: str,
        sender: str | None,
        api_extension: str | None,
    ) -> None:
        """Queue an e-mail (the HTTP SendEmail command); returns at once."""
        ...

    async def route(
        self, *, destination: str, ring_time: int, caller_id: str | None, dialed_number: str | None
    ) -> None:
        """The routing decision of a RoutingInterception reply; "" = reject the caller."""
        ...

    async def delete_file(self, path: str) -> None:
        """Delete a file under the recordings directory (ActionFailed outside it)."""
        ...

    async def move_file(self, source: str, target: str) -> None:
        """Move a file within the recordings directory (ActionFailed outside it)."""
        ...

    async def send_alarm(
        self,
        *,
        phone_number: str,
        account_number: str,
        event_qualifier: str,
        event_code: str,
        partition_number: str,
        zone_number: str,
        api_extension: str | None,
        result_url: str | None,
    ) -> None:
        """Send an Ademco Contact ID alarm by calling `phone_number`; returns at once."""
        ...

    async def receive_alarm(self, call_id: str) -> AlarmMessage | None:
        """Receive a Contact ID alarm on the call; None if none could be received."""
        ...


class Notifications(Protocol):
    """Steering notifications whose reply continues the running script (spec 5.3)."""

    async def fetch(self, url: str, name: str, fields: Sequence[tuple[str, str]]) -> str | None:
        """POST notification `name` with `fields` (NotificationName is added by the sender)
        to `url` and return the reply body; None when the request failed (non-2xx,
        connection error, timeout). Implemented with `Notifier.request(..., key=CallId)`."""
        ...
