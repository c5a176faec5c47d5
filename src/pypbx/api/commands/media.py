"""Media commands on a call (spec 8.8-8.11): DTMF, playback, text-to-speech, recording."""

from __future__ import annotations

from pypbx.api import validators as v
from pypbx.api.commands.calls import CALL_ID
from pypbx.api.registry import Command, Param

PARTY = Param("Party", mandatory=True, validator=v.party)

COMMANDS = (
    Command(
        "SendDTMF",
        None,
        (CALL_ID, PARTY, Param("Keys", mandatory=True, validator=v.dtmf_keys)),
    ),
    Command(
        "Play",
        None,
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
        None,
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
        None,
        (
            CALL_ID,
            Param("Format", validator=v.choice("mp3", "wav")),
            Param("FinishedURL", validator=v.url, aliases=("FinishedUrl",)),
            Param("Duration", validator=v.integer(minimum=1)),
            Param("Inactivity", validator=v.integer(minimum=1)),
            Param("FinishDigits", validator=v.dtmf_keys),
            Param("RecordPath"),
        ),
    ),
)
