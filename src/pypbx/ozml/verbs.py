"""OzML verbs as typed, immutable values (spec notifications-ozml.md section 6).

Why a typed tree rather than the XML elements: every leniency rule (case, aliases, attribute
versus text, booleans, numbers) is applied once, in the parser, so the interpreter and its
tests see one spelling of everything. Fields mirror the attribute tables of section 6; a
defaulted field carries the documented default, and `None` means "not given, let the PBX
decide" (server default voice, notified call, ...).

String fields keep their `$variables` unexpanded: substitution happens when a verb runs
(variables.py), because a `Var` earlier in the same script - or in a script that ran before a
`GoTo` - decides the value. Numeric and boolean fields are typed at parse time and take no
variables (a `$` there is an invalid number and yields the default, with a warning).

A mandatory string that is missing is kept as `""`; the interpreter skips such a verb with a
log line, so one bad verb never makes the whole reply a failed notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

PartyName = Literal["caller", "callee", "all"]
LegName = Literal["caller", "callee"]
AudioFormat = Literal["mp3", "wav"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Speak:
    """6.1: text to speech; blocks until spoken."""

    ELEMENT: ClassVar[str] = "Speak"
    text: str
    party: PartyName | None = None
    call_id: str | None = None
    language: str | None = None
    voice: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """6.2: a WAV/MP3 file or URL; `timeout` in seconds (Ozeki 10)."""

    ELEMENT: ClassVar[str] = "Play"
    audio_file: str
    party: PartyName | None = None
    call_id: str | None = None
    repeat: bool = False
    timeout: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delay:
    """6.3: pause; negative or unparsable values are 0."""

    ELEMENT: ClassVar[str] = "Delay"
    time: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """6.4: blocking with stop conditions in an API-extension script, background in 3PCC."""

    ELEMENT: ClassVar[str] = "Record"
    call_id: str | None = None
    format: AudioFormat = "mp3"
    finished_url: str | None = None
    duration: float | None = None
    inactivity: float | None = None
    finish_digits: str = ""
    record_path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Input:
    """One menu entry of a UserInput: the verbs run when the entry equals `key`."""

    key: str
    verbs: tuple[Verb, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInput:
    """6.5: prompts with barge-in, then DTMF collection and branching.

    `digits` is None when the attribute was absent (the interpreter then uses 1, or the
    longest Input key); `min_digits`/`max_digits` are the Ozeki 10 attributes.
    """

    ELEMENT: ClassVar[str] = "UserInput"
    timeout: float = 0.0
    repeat: bool = False
    back_key: str | None = None
    digits: int | None = None
    min_digits: int | None = None
    max_digits: int | None = None
    forward_to_url: str | None = None
    execute_sql: str | None = None
    initial_commands: tuple[Verb, ...] = ()
    inputs: tuple[Input, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GoTo:
    """6.6: fetch OzML from `url` and continue with it (jump)."""

    ELEMENT: ClassVar[str] = "GoTo"
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    """6.7: end this call (API extension) or the call `call_id` (3PCC)."""

    ELEMENT: ClassVar[str] = "Hangup"
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """6.8: a new outgoing call from an API extension; never blocks the script."""

    ELEMENT: ClassVar[str] = "Call"
    dialled: str
    api_extension: str | None = None
    caller_id: str | None = None
    caller_display_name: str | None = None
    url: str | None = None
    error_url: str | None = None
    response_ozml: str | None = None
    finished_url: str | None = None
    ring_time: int = 90


@dataclass(frozen=True, slots=True, kw_only=True)
class BlindTransfer:
    """6.9: API extension: the other party goes to `target`; 3PCC: `transferor_party` leaves."""

    ELEMENT: ClassVar[str] = "BlindTransfer"
    target: str
    transferor_party: LegName | None = None
    call_id: str | None = None
    finished_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttendedTransfer:
    """6.10 (3PCC): join the other parties of two calls sharing the transferor."""

    ELEMENT: ClassVar[str] = "AttendedTransfer"
    target_call_id: str
    transferred_call_id: str | None = None
    transferor_party: LegName | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """6.11 (3PCC): ring `destination` instead of the current callee."""

    ELEMENT: ClassVar[str] = "Forward"
    destination: str
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """6.12 (3PCC)."""

    ELEMENT: ClassVar[str] = "Hold"
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unhold:
    """6.13 (3PCC)."""

    ELEMENT: ClassVar[str] = "Unhold"
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """6.14: refuse an IncomingCall; only meaningful as the reply's first verb."""

    ELEMENT: ClassVar[str] = "Reject"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDtmf:
    """6.15: key presses towards a party."""

    ELEMENT: ClassVar[str] = "SendDTMF"
    keys: str
    party: PartyName | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendSms:
    """6.16: non-blocking."""

    ELEMENT: ClassVar[str] = "SendSms"
    recipient: str
    message: str
    sender: str | None = None
    api_extension: str | None = None
    delivery_report_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendEmail:
    """6.17: non-blocking."""

    ELEMENT: ClassVar[str] = "SendEmail"
    recipient: str
    subject: str = ""
    message: str = ""
    sender: str | None = None
    api_extension: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Var:
    """6.18: defines `$id`."""

    ELEMENT: ClassVar[str] = "Var"
    id: str
    value: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Array:
    """6.19: a named list of strings for ForEach."""

    ELEMENT: ClassVar[str] = "Array"
    id: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ForEach:
    """6.19: runs `verbs` once per item of the array `source`, with `$item` set."""

    ELEMENT: ClassVar[str] = "ForEach"
    source: str
    verbs: tuple[Verb, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """6.20: the routing decision; an empty destination rejects the caller."""

    ELEMENT: ClassVar[str] = "Route"
    destination: str = ""
    ring_time: int = 90
    caller_id: str | None = None
    dialed_number: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteFile:
    """6.21 [R]: a path relative to the recordings directory."""

    ELEMENT: ClassVar[str] = "DeleteFile"
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveFile:
    """6.21 [R]: paths relative to the recordings directory."""

    ELEMENT: ClassVar[str] = "MoveFile"
    source: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendAlarmNotification:
    """6.22: an Ademco Contact ID message sent by calling `phone_number`."""

    ELEMENT: ClassVar[str] = "SendAlarmNotification"
    phone_number: str
    account_number: str
    event_code: str
    partition_number: str
    zone_number: str
    event_qualifier: str = "NewEvent"
    api_extension: str | None = None
    result_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveAlarmNotification:
    """6.23: receive a Contact ID alarm on this call, then run `received`."""

    ELEMENT: ClassVar[str] = "ReceiveAlarmNotification"
    received: tuple[Verb, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Beep:
    """6.24 (Ozeki 10): a short 1 kHz tone."""

    ELEMENT: ClassVar[str] = "Beep"
    party: PartyName | None = None
    call_id: str | None = None


Verb = (
    Speak
    | Play
    | Delay
    | Record
    | UserInput
    | GoTo
    | Hangup
    | Call
    | BlindTransfer
    | AttendedTransfer
    | Forward
    | Hold
    | Unhold
    | Reject
    | SendDtmf
    | SendSms
    | SendEmail
    | Var
    | Array
    | ForEach
    | Route
    | DeleteFile
    | MoveFile
    | SendAlarmNotification
    | ReceiveAlarmNotification
    | Beep
)


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed reply: its verbs in document order.

    `root` is the root element's XE spelling (`Response` or `OzML`), None when the document
    was a bare list of verbs. `warnings` lists what the parser skipped or repaired, in order,
    so the notification log can show why a verb did not run.
    """

    verbs: tuple[Verb, ...] = ()
    root: str | None = "Response"
    warnings: tuple[str, ...] = ()
