"""Who a script runs for (spec 5.4) and how its run ended.

The same verb means different things per context - `Speak` goes to "the other party" of an
API extension's call but to an explicit `Party` of any call in 3PCC - and some notifications
have no call at all (IncomingSMS, SMSDeliveryReport, Error). A `Session` carries exactly that
knowledge into the interpreter; the constructors name the notifications of section 4 so the
PBX cannot pair a context with the wrong defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pypbx.ozml.verbs import LegName, Route


class Context(StrEnum):
    """The verb set a reply is read with (spec 5.4)."""

    API_EXTENSION = "api_extension"
    THIRD_PARTY = "third_party"
    ROUTING = "routing"


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """The notification a script answers and the call it belongs to.

    `call_id` is None for call-less notifications; `remote_party` is the leg the API extension
    talks to (`caller` when it was called, `callee` when it placed the call); `remote_number`
    is that party's number, sent as `Caller` in DtmfEntered and GoTo.
    """

    context: Context
    notification: str
    call_id: str | None = None
    api_extension: str | None = None
    remote_party: LegName = "caller"
    remote_number: str = ""

    @property
    def own_party(self) -> LegName:
        """The API extension's own leg: the transferor of its BlindTransfer."""
        return "callee" if self.remote_party == "caller" else "caller"

    @classmethod
    def incoming_call(cls, *, call_id: str, api_extension: str, caller: str) -> Session:
        """Reply to IncomingCall: the call still rings; Reject is possible (spec 4.4)."""
        return cls(
            context=Context.API_EXTENSION,
            notification="IncomingCall",
            call_id=call_id,
            api_extension=api_extension,
            remote_party="caller",
            remote_number=caller,
        )

    @classmethod
    def call_connected(cls, *, call_id: str, api_extension: str, dialed: str) -> Session:
        """Reply to CallConnected (or a Call's ResponseOzML): the callee answered (4.5)."""
        return cls(
            context=Context.API_EXTENSION,
            notification="CallConnected",
            call_id=call_id,
            api_extension=api_extension,
            remote_party="callee",
            remote_number=dialed,
        )

    @classmethod
    def third_party(cls, *, notification: str, call_id: str | None) -> Session:
        """Reply to CallChanged or a 3PCC RecordCompleted (4.2, 4.3)."""
        return cls(context=Context.THIRD_PARTY, notification=notification, call_id=call_id)

    @classmethod
    def routing(cls, *, call_id: str | None = None) -> Session:
        """Reply to RoutingInterception (4.1)."""
        return cls(context=Context.ROUTING, notification="RoutingInterception", call_id=call_id)

    @classmethod
    def call_less(cls, *, notification: str, api_extension: str | None) -> Session:
        """Reply to IncomingSMS, SMSDeliveryReport, Error or a report about a finished call:
        only verbs that need no call run (4.8, 4.9, 4.11)."""
        return cls(
            context=Context.API_EXTENSION, notification=notification, api_extension=api_extension
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Guards against runaway scripts and the [R] timings of spec 6.4-6.9 (configurable)."""

    max_depth: int = 64  # nested blocks: UserInput in Input in UserInput, inline replies, ForEach
    max_gotos: int = 100  # GoTo jumps per call
    max_rounds: int = 10  # prompt rounds of one UserInput (Repeat cap, spec 6.5 step 5)
    inter_digit_timeout: float = 5.0  # wait for each key after the first of a multi-key entry
    entry_pause: float = 3.0  # MinDigits < MaxDigits: a pause this long completes the entry
    transfer_timeout: float = 30.0  # API-extension BlindTransfer: target must answer by then
    record_cap: float = 3600.0  # API-extension Record without Duration
    max_variable_chars: int = 65_536  # a Var value is cut to this length


class Ending(StrEnum):
    """Why a script run ended."""

    COMPLETED = "completed"  # ran out of verbs (an API-extension call was then hung up)
    HUNG_UP = "hung_up"  # a Hangup verb ended the API extension's call
    REJECTED = "rejected"  # IncomingCall refused (Reject verb, or an empty reply)
    CALL_GONE = "call_gone"  # the call ended under the script
    TRANSFERRED = "transferred"  # a BlindTransfer put the other party through
    LIMIT = "limit"  # nesting or GoTo limit reached (the call was then hung up)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of `Interpreter.run`: why it ended, the routing decision (routing context
    only), how many GoTo jumps were made, and the variables as they were at the end."""

    ending: Ending
    route: Route | None = None
    gotos: int = 0
    variables: Mapping[str, str] = field(default_factory=dict)
