"""Play, Speak, Record and SendDTMF over the HTTP API (spec 8.8-8.11): what reaches the PBX,
parameter validation, and how the PBX's errors become status codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from api_support import FakePbx, envelope

from pypbx.pbx.control import (
    ActiveCallInfo,
    CallNotFoundError,
    InappropriateStateError,
    InvalidMediaRequestError,
    RecordRequest,
)
from pypbx.pbx.states import CallState

Client = TestClient[Any, Any]
OK = envelope(200, "Command successfully executed")

# A valid request for each command, to which tests add or override parameters.
BASE = {
    "Play": "command=Play&CallId=H2Wwb&Party=all&AudioFile=hello.wav",
    "Speak": "command=Speak&CallId=H2Wwb&Text=Hello+world",
    "Record": "command=Record&CallId=H2Wwb",
    "SendDTMF": "command=SendDTMF&CallId=H2Wwb&Party=caller&Keys=123",
}
OPERATION = {"Play": "play", "Speak": "speak", "Record": "record", "SendDTMF": "send_dtmf"}


@pytest.fixture
def with_call(pbx: FakePbx) -> FakePbx:
    pbx.calls = [
        ActiveCallInfo(
            call_id="H2Wwb",
            state=CallState.IN_CALL,
            source="1000",
            caller_id="1000",
            destination="1001",
            caller_dialed="1001",
            callee_dialed="1001",
            start_time=datetime(2013, 7, 1, 8, 49, 7, tzinfo=UTC),
            ring_duration=2.0,
            talk_duration=12.0,
        )
    ]
    return pbx


def override(query: str, extra: str) -> str:
    """`query` with the pairs of `extra` (`&Name=value...`, already encoded) replacing its
    own pairs of those names, or added at the end."""
    pairs = [pair.split("=", 1) for pair in query.split("&")]
    for name, value in (pair.split("=", 1) for pair in extra.lstrip("&").split("&")):
        for pair in pairs:
            if pair[0].casefold() == name.casefold():
                pair[1] = value
                break
        else:
            pairs.append([name, value])
    return "&".join(f"{name}={value}" for name, value in pairs)


async def ask(client: Client, query: str, path: str = "/") -> str:
    resp = await client.get(f"{path}?{query}")
    assert resp.status == 200
    return await resp.text()


# --------------------------------------------------------------------------- Play


async def test_play_documented_example(client: Client, with_call: FakePbx) -> None:
    query = "command=Play&CallId=H2Wwb&Party=all&AudioFile=hello.wav&Repeat=false"
    assert await ask(client, query) == OK
    assert with_call.media == [
        (
            "play",
            "H2Wwb",
            {"party": "all", "audio_file": "hello.wav", "repeat": False, "timeout": None},
        )
    ]


async def test_play_with_url_repeat_and_timeout(client: Client, with_call: FakePbx) -> None:
    query = (
        "command=play&callid=H2Wwb&party=CALLER&audiofile=http%3A%2F%2Fmedia.example%2Fw.mp3"
        "&repeat=TRUE&timeout=10"
    )
    assert await ask(client, query) == OK
    assert with_call.media == [
        (
            "play",
            "H2Wwb",
            {
                "party": "caller",
                "audio_file": "http://media.example/w.mp3",
                "repeat": True,
                "timeout": 10,
            },
        )
    ]


async def test_play_o10_and_post_body(client: Client, with_call: FakePbx) -> None:
    resp = await client.post(
        "/api",
        data="command=Play&CallId=H2Wwb&Party=callee&AudioFile=a%20b.wav",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert await resp.text() == OK
    assert with_call.media[0][2]["party"] == "callee"
    assert with_call.media[0][2]["audio_file"] == "a b.wav"


# --------------------------------------------------------------------------- Speak


async def test_speak_defaults_party_to_all(client: Client, with_call: FakePbx) -> None:
    assert await ask(client, "command=Speak&CallId=H2Wwb&Text=Hello+world", "/api") == OK
    assert with_call.media == [
        (
            "speak",
            "H2Wwb",
            {"party": "all", "text": "Hello world", "language": None, "voice": None},
        )
    ]


async def test_speak_documented_example(client: Client, with_call: FakePbx) -> None:
    query = (
        "command=Speak&CallId=H2Wwb&Party=caller&Text=Your+balance+is+one+dollar"
        "&Language=en-UK&Voice=Microsoft+Anna"
    )
    assert await ask(client, query) == OK
    assert with_call.media == [
        (
            "speak",
            "H2Wwb",
            {
                "party": "caller",
                "text": "Your balance is one dollar",
                "language": "en-UK",
                "voice": "Microsoft Anna",
            },
        )
    ]


# --------------------------------------------------------------------------- Record


async def test_record_defaults(client: Client, with_call: FakePbx) -> None:
    assert await ask(client, "command=Record&CallId=H2Wwb") == OK
    assert with_call.media == [("record", "H2Wwb", {"request": RecordRequest()})]
    assert RecordRequest().format == "mp3"


async def test_record_every_option(client: Client, with_call: FakePbx) -> None:
    query = (
        "command=Record&CallId=H2Wwb&Format=WAV&FinishedUrl=http%3A%2F%2Fapp.example%2Fdone"
        "&Duration=60&Inactivity=5&FinishDigits=78*%23a&RecordPath=team%2Fsales&Stereo=True"
    )
    assert await ask(client, query, "/api") == OK
    assert with_call.media == [
        (
            "record",
            "H2Wwb",
            {
                "request": RecordRequest(
                    format="wav",
                    finished_url="http://app.example/done",
                    duration=60,
                    inactivity=5,
                    finish_digits="78*#A",
                    record_path="team/sales",
                    stereo=True,
                )
            },
        )
    ]


@pytest.mark.parametrize(("value", "expected"), [("mp3", "mp3"), ("MP3", "mp3"), ("Wav", "wav")])
async def test_record_format_is_lowercased(
    client: Client, with_call: FakePbx, value: str, expected: str
) -> None:
    assert await ask(client, f"command=Record&CallId=H2Wwb&Format={value}") == OK
    request = with_call.media[0][2]["request"]
    assert isinstance(request, RecordRequest)
    assert request.format == expected


async def test_record_finished_url_canonical_name(client: Client, with_call: FakePbx) -> None:
    query = "command=Record&CallId=H2Wwb&FinishedURL=https%3A%2F%2Fapp.example%2Fx%3Fa%3D1"
    assert await ask(client, query) == OK
    request = with_call.media[0][2]["request"]
    assert isinstance(request, RecordRequest)
    assert request.finished_url == "https://app.example/x?a=1"


# --------------------------------------------------------------------------- SendDTMF


async def test_send_dtmf_documented_example(client: Client, with_call: FakePbx) -> None:
    query = "command=SendDTMF&CallId=H2Wwb&Party=caller&Keys=01234%23"
    assert await ask(client, query) == OK
    assert with_call.media == [("send_dtmf", "H2Wwb", {"party": "caller", "keys": "01234#"})]


async def test_send_dtmf_letters_are_uppercased(client: Client, with_call: FakePbx) -> None:
    assert await ask(client, "command=senddtmf&CallId=H2Wwb&Party=All&Keys=abcd*", "/api") == OK
    assert with_call.media == [("send_dtmf", "H2Wwb", {"party": "all", "keys": "ABCD*"})]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("command", "extra", "param"),
    [
        ("Play", "&CallId=", "CallId"),
        ("Play", "&Party=", "Party"),
        ("Play", "&Party=everyone", "Party"),
        ("Play", "&AudioFile=", "AudioFile"),
        ("Play", "&Repeat=yes", "Repeat"),
        ("Play", "&Repeat=1", "Repeat"),
        ("Play", "&Timeout=0", "Timeout"),
        ("Play", "&Timeout=-5", "Timeout"),
        ("Play", "&Timeout=ten", "Timeout"),
        ("Play", "&Timeout=1.5", "Timeout"),
        ("Speak", "&Text=", "Text"),
        ("Speak", "&Text=+", "Text"),
        ("Speak", "&Party=bob", "Party"),
        ("Speak", "&CallId=" + "x" * 65, "CallId"),
        ("Record", "&Format=ogg", "Format"),
        ("Record", "&Stereo=maybe", "Stereo"),
        ("Record", "&Duration=0", "Duration"),
        ("Record", "&Inactivity=soon", "Inactivity"),
        ("Record", "&FinishDigits=12x", "FinishDigits"),
        ("Record", "&FinishedURL=ftp%3A%2F%2Fapp.example%2F", "FinishedURL"),
        ("Record", "&FinishedUrl=not-a-url", "FinishedURL"),
        ("SendDTMF", "&Party=", "Party"),
        ("SendDTMF", "&Party=nobody", "Party"),
        ("SendDTMF", "&Keys=", "Keys"),
        ("SendDTMF", "&Keys=12E", "Keys"),
        ("SendDTMF", "&Keys=1+2", "Keys"),
    ],
)
async def test_bad_parameters_302(
    client: Client, with_call: FakePbx, command: str, extra: str, param: str
) -> None:
    assert await ask(client, override(BASE[command], extra)) == envelope(
        302, f"Missing or invalid parameter '{param}' for command '{command}'"
    )
    assert with_call.media == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("command=Play&CallId=H2Wwb&Party=all", "AudioFile"),
        ("command=Play&CallId=H2Wwb&AudioFile=x.wav", "Party"),
        ("command=Play&Party=all&AudioFile=x.wav", "CallId"),
        ("command=Play&CallId=H2Wwb&Party=bad", "Party"),  # table order: Party before AudioFile
        ("command=Speak&CallId=H2Wwb", "Text"),
        ("command=Record", "CallId"),
        ("command=SendDTMF&CallId=H2Wwb&Party=caller", "Keys"),
        ("command=SendDTMF&CallId=H2Wwb&Keys=1", "Party"),
    ],
)
async def test_missing_parameters_302(
    client: Client, with_call: FakePbx, query: str, param: str
) -> None:
    command = query.split("&")[0].removeprefix("command=")
    assert await ask(client, query) == envelope(
        302, f"Missing or invalid parameter '{param}' for command '{command}'"
    )
    assert with_call.media == []


# --------------------------------------------------------------------------- PBX errors


@pytest.mark.parametrize("command", list(BASE))
async def test_unknown_call_601(client: Client, with_call: FakePbx, command: str) -> None:
    query = BASE[command].replace("CallId=H2Wwb", "CallId=XzeOK")
    assert await ask(client, query) == envelope(601, "Call not found with ID 'XzeOK'")
    assert [m[:2] for m in with_call.media] == [(OPERATION[command], "XzeOK")]


@pytest.mark.parametrize("command", list(BASE))
async def test_call_not_found_raised_by_the_pbx_601(
    client: Client, with_call: FakePbx, command: str
) -> None:
    with_call.errors[(OPERATION[command], "H2Wwb")] = CallNotFoundError("H2Wwb")
    assert await ask(client, BASE[command], "/api") == envelope(
        601, "Call not found with ID 'H2Wwb'"
    )


@pytest.mark.parametrize("command", list(BASE))
async def test_wrong_state_303(client: Client, with_call: FakePbx, command: str) -> None:
    with_call.errors[(OPERATION[command], "H2Wwb")] = InappropriateStateError("H2Wwb")
    assert await ask(client, BASE[command].replace("command=", "command=%20")) == envelope(
        303, f"Command '{command}' cannot be used here"
    )


@pytest.mark.parametrize(
    ("command", "param", "reason"),
    [
        ("Play", "AudioFile", "file not found: hello.wav"),
        ("Play", "AudioFile", "download failed: HTTP 404"),
        ("Speak", "Text", "speech synthesis is not available"),
        ("Record", "RecordPath", "must be a directory inside the recordings directory"),
        ("SendDTMF", "Keys", "too many keys"),
    ],
)
async def test_unusable_media_302_with_reason(
    client: Client, with_call: FakePbx, command: str, param: str, reason: str
) -> None:
    with_call.errors[(OPERATION[command], "H2Wwb")] = InvalidMediaRequestError(param, reason)
    assert await ask(client, BASE[command]) == envelope(
        302, f"Missing or invalid parameter '{param}' for command '{command}': {reason}"
    )


async def test_unusable_media_reason_is_escaped(client: Client, with_call: FakePbx) -> None:
    with_call.errors[("play", "H2Wwb")] = InvalidMediaRequestError(
        "AudioFile", "not <wav> & not mp3"
    )
    assert await ask(client, BASE["Play"], "/api") == envelope(
        302,
        "Missing or invalid parameter 'AudioFile' for command 'Play': "
        "not &lt;wav&gt; &amp; not mp3",
    )


async def test_unexpected_pbx_failure_is_500_without_details(
    client: Client, with_call: FakePbx
) -> None:
    with_call.errors[("play", "H2Wwb")] = RuntimeError("secret detail")
    resp = await client.get(f"/?{BASE['Play']}")
    assert resp.status == 500
    assert "secret" not in await resp.text()
