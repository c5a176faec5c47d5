"""Ozeki 10 command names outside this project's scope (spec section 10).

Registered so that they are recognised names; without a handler they answer 301 like
any unimplemented command.
"""

from __future__ import annotations

from pypbx.api.registry import Command

OUT_OF_SCOPE_NAMES = (
    "CallSetup",
    "Request",
    "Beep",
    "Array",
    "ForEach",
    "GoTo",
    "DeleteFile",
    "MoveFile",
    "ReceiveMessage",
    "SendMessage",
    "SendMsg",
    "WaitForMsg",
)

COMMANDS = tuple(Command(name) for name in OUT_OF_SCOPE_NAMES)
