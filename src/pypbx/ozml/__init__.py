"""OzML: the XML call-flow language a business application returns to a notification.

Ozeki Phone System applications answer the PBX's notifications (IncomingCall, CallChanged,
RoutingInterception, ...) with OzML, much as Twilio applications answer with TwiML; pypbx must
run those replies unchanged, including the sloppy ones Ozeki's own examples contain.

Two halves, both free of I/O so they can be tested exhaustively:

* `parse_ozml` (parser.py, repair.py, values.py) turns a reply into a typed `Script` of frozen
  verb dataclasses (verbs.py), applying every leniency rule of spec 5.2;
* `Interpreter` (interpreter.py, menu.py) runs a Script for one call under the execution model
  of spec 5.3-5.5, doing everything through the `CallActions` and `Notifications` protocols
  (actions.py) that the PBX implements.
"""

from pypbx.ozml.actions import (
    ActionFailed,
    AlarmMessage,
    CallActions,
    CallGone,
    Notifications,
    RecordingResult,
    RecordOptions,
    RejectReason,
)
from pypbx.ozml.errors import OzmlError
from pypbx.ozml.interpreter import Interpreter
from pypbx.ozml.parser import MAX_DOCUMENT_BYTES, parse_ozml
from pypbx.ozml.session import Context, Ending, Limits, Outcome, Session
from pypbx.ozml.variables import resolve, substitute
from pypbx.ozml.verbs import (
    Array,
    AttendedTransfer,
    AudioFormat,
    Beep,
    BlindTransfer,
    Call,
    Delay,
    DeleteFile,
    ForEach,
    Forward,
    GoTo,
    Hangup,
    Hold,
    Input,
    LegName,
    MoveFile,
    PartyName,
    Play,
    ReceiveAlarmNotification,
    Record,
    Reject,
    Route,
    Script,
    SendAlarmNotification,
    SendDtmf,
    SendEmail,
    SendSms,
    Speak,
    Unhold,
    UserInput,
    Var,
    Verb,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "ActionFailed",
    "AlarmMessage",
    "Array",
    "AttendedTransfer",
    "AudioFormat",
    "Beep",
    "BlindTransfer",
    "Call",
    "CallActions",
    "CallGone",
    "Context",
    "Delay",
    "DeleteFile",
    "Ending",
    "ForEach",
    "Forward",
    "GoTo",
    "Hangup",
    "Hold",
    "Input",
    "Interpreter",
    "LegName",
    "Limits",
    "MoveFile",
    "Notifications",
    "Outcome",
    "OzmlError",
    "PartyName",
    "Play",
    "ReceiveAlarmNotification",
    "Record",
    "RecordOptions",
    "RecordingResult",
    "Reject",
    "RejectReason",
    "Route",
    "Script",
    "SendAlarmNotification",
    "SendDtmf",
    "SendEmail",
    "SendSms",
    "Session",
    "Speak",
    "Unhold",
    "UserInput",
    "Var",
    "Verb",
    "parse_ozml",
    "resolve",
    "substitute",
]
