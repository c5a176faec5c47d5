"""Media commands on a call (spec 8.8-8.11): DTMF, playback, text-to-speech, recording."""

from __future__ import annotations

from collections.abc import Awaitable

from pypbx.api import validators as v
from pypbx.api.commands.calls import CALL_ID, _run
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, Param
from pypbx.api.status import ApiError, Status
from pypbx.api.xmlout import Node
from pypbx.pbx.control import InvalidMediaRequestError, RecordRequest

PARTY = Param("Party", mandatory=True, validator=v.party)


async def _media(ctx: CommandContext, action: Awaitable[None]) -> list[Node]:
    """`_run`, plus 302 naming the parameter whose file, URL or directory is unusable; the
    reason follows the documented message so an operator sees what went wrong."""
    try:
        return await _run(ctx, action)
    except InvalidMediaRequestError as exc:
        error = ApiError(Status.INVALID_PARAMETER, exc.param, ctx.command_name)
        error.message = f"{error.message}: {exc.reason}"
        raise error from exc


async def send_dtmf(ctx: CommandContext) -> list[Node]:
    call_id, party = ctx.require("CallId", str), ctx.require("Party", str)
    return await _media(ctx, ctx.pbx.send_dtmf(call_id, party, ctx.require("Keys", str)))


async def play(ctx: CommandContext) -> list[Node]:
    action = ctx.pbx.play(
        ctx.require("CallId", str),
        ctx.require("Party", str),
        ctx.require("AudioFile", str),
        repeat=ctx.arg("Repeat", bool) or False,
        timeout=ctx.arg("Timeout", int),
    )
    return await _media(ctx, action)


async def speak(ctx: CommandContext) -> list[Node]:
    action = ctx.pbx.speak(
        ctx.require("CallId", str),
        ctx.arg("Party", str) or "all",
        ctx.require("Text", str),
        language=ctx.arg("Language", str),
        voice=ctx.arg("Voice", str),
    )
    return await _media(ctx, action)


async def record(ctx: CommandContext) -> list[Node]:
    request = RecordRequest(
        format=(ctx.arg("Format", str) or "mp3").lower(),
        finished_url=ctx.arg("FinishedURL", str),
        duration=ctx.arg("Duration", int),
        inactivity=ctx.arg("Inactivity", int),
        finish_digits=ctx.arg("FinishDigits", str) or "",
        record_path=ctx.arg("RecordPath", str),
        stereo=ctx.arg("Stereo", bool) or False,
    )
    return await _media(ctx, ctx.pbx.record(ctx.require("CallId", str), request))


COMMANDS = (
    Command(
        "SendDTMF",
        send_dtmf,
        (CALL_ID, PARTY, Param("Keys", mandatory=True, validator=v.dtmf_keys)),
    ),
    Command(
        "Play",
        play,
        (
            CALL_ID,
            PARTY,
            Param("AudioFile", mandatory=True),
            Param("Repeat", validator=v.boolean),
            Param("Timeout", validator=v.integer(minimum=1)),
        ),
    ),
    Command(
        "Speak",
        speak,
        (
            CALL_ID,
            Param("Text", mandatory=True),
            # O10 makes Party optional; the handler defaults it to `all` (spec 8.10).
            Param("Party", validator=v.party),
            Param("Language"),
            Param("Voice"),
        ),
    ),
    Command(
        "Record",
        record,
        (
            CALL_ID,
            Param("Format", validator=v.choice("mp3", "wav")),
            Param("FinishedURL", validator=v.url, aliases=("FinishedUrl",)),
            Param("Duration", validator=v.integer(minimum=1)),
            Param("Inactivity", validator=v.integer(minimum=1)),
            Param("FinishDigits", validator=v.dtmf_keys),
            Param("RecordPath"),
            # pypbx addition: one party per stereo channel (caller left, callee right)
            Param("Stereo", validator=v.boolean),
        ),
    ),
)
