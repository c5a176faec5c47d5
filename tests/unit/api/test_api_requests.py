"""Request handling: paths, methods, parameter sources, evaluation order (spec 2, 3.1, 4.2)."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from api_support import Client, ClientFactory, FakePbx, code_message, envelope, raw_request

from pypbx.api.commands import default_registry
from pypbx.api.registry import Command, CommandRegistry
from pypbx.api.settings import ApiSettings
from pypbx.pbx.control import ActiveCallInfo
from pypbx.pbx.states import CallState

OK = envelope(200, "Command successfully executed")
EMPTY_CALLS = envelope(200, "Command successfully executed", "  <ActiveCalls />")

NOT_IMPLEMENTED = [
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
]


def _call(call_id: str = "uteom") -> ActiveCallInfo:
    return ActiveCallInfo(
        call_id=call_id,
        state=CallState.IN_CALL,
        source="1000",
        caller_id="1000",
        destination="1001",
        caller_dialed="1001",
        callee_dialed="1001",
        start_time=datetime(2024, 1, 1, tzinfo=UTC),
        ring_duration=1.0,
        talk_duration=2.0,
    )


async def test_http_layer(client: Client) -> None:
    resp = await client.get("/?command=ListActiveCalls")
    body = await resp.read()
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert int(resp.headers["Content-Length"]) == len(body)
    assert body.decode() == EMPTY_CALLS


@pytest.mark.parametrize(
    "path",
    [
        "/?command=ListActiveCalls",
        "/api?command=ListActiveCalls",
        "/api/?command=ListActiveCalls",
        "/API?command=ListActiveCalls",
        "/command=ListActiveCalls",
        "/command=ListActiveCalls&Foo=1",
        "/Command=ListActiveCalls",
    ],
)
async def test_served_paths(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert code_message(await resp.text()) == (200, "Command successfully executed")


async def test_anomaly_path_merges_with_query(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call("abc")]
    resp = await client.get("/command=Hangup?CallId=abc")
    assert await resp.text() == OK
    assert pbx.hung_up == ["abc"]


@pytest.mark.parametrize("path", ["/other", "/api/x", "/apix", "/index.html", "//", "/%61pi"])
async def test_other_paths_404(client: Client, path: str) -> None:
    status, _ = await raw_request(client, path + "?command=ListActiveCalls")
    assert status == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_other_methods_405(client: Client, method: str) -> None:
    resp = await client.request(method, "/api?command=ListActiveCalls")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET,POST"


async def test_dialect_by_path(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call()]
    xe = await (await client.get("/?command=ListActiveCalls")).text()
    o10 = await (await client.get("/api?command=ListActiveCalls")).text()
    anomaly = await (await client.get("/command=ListActiveCalls")).text()
    assert "<CallInfo>" in xe and "<Call>" not in xe
    assert "<Call>" in o10 and "<CallInfo>" not in o10
    assert anomaly == xe


async def test_post_form_body(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call("23Xdz7")]
    resp = await client.post("/", data={"command": "Hangup", "CallId": "23Xdz7"})
    assert await resp.text() == OK
    assert pbx.hung_up == ["23Xdz7"]


async def test_body_wins_over_query(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call("frombody")]
    resp = await client.post("/?command=Hangup&CallId=fromquery", data={"CallId": "frombody"})
    assert await resp.text() == OK
    assert pbx.hung_up == ["frombody"]


async def test_blank_body_value_does_not_hide_query(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call("q")]
    resp = await client.post("/?command=Hangup&CallId=q", data={"CallId": " "})
    assert await resp.text() == OK
    assert pbx.hung_up == ["q"]


async def test_post_without_content_type_is_read_as_form(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call("x1")]
    resp = await client.post(
        "/", data=b"command=Hangup&CallId=x1", skip_auto_headers={"Content-Type"}
    )
    assert await resp.text() == OK


async def test_multipart_body_is_accepted(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [_call("mp")]
    form = aiohttp.FormData()
    form.add_field("command", "Hangup")
    form.add_field("CallId", "mp")
    form.add_field("Ignored", b"\x01\x02", filename="x.bin")
    resp = await client.post("/", data=form)
    assert await resp.text() == OK
    assert pbx.hung_up == ["mp"]


async def test_post_to_api_and_anomaly_paths(client: Client) -> None:
    for path in ("/api", "/api/", "/command=ListActiveCalls"):
        resp = await client.post(path, data={"command": "ListActiveCalls"})
        assert code_message(await resp.text())[0] == 200


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/?command=ListActiveCalls&x=%zz", "malformed percent-encoding"),
        ("/?command=ListActiveCalls&x=%FF", "invalid UTF-8 in request"),
        ("/?command=ListActiveCalls&x=100%", "malformed percent-encoding"),
        ("/?command=ListActiveCalls&x=%C3%28", "invalid UTF-8 in request"),
        ("/command=List%GG", "malformed percent-encoding"),
        ("/api?command=%zz", "malformed percent-encoding"),
    ],
)
async def test_query_parse_errors_300(client: Client, target: str, reason: str) -> None:
    status, body = await raw_request(client, target)
    assert status == 200
    assert body == envelope(300, f"Error occured during parsing message: '{reason}'")


FORM = "Content-Type: application/x-www-form-urlencoded\r\n"


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"command=ListActiveCalls&x=%C3", FORM, "invalid UTF-8 in request"),
        (b"command=ListActiveCalls&x=\xff", FORM, "invalid UTF-8 in request"),
        (b"command=ListActiveCalls&x=\xff", "", "invalid UTF-8 in request"),
        (b"command=ListActiveCalls&%=1", FORM, "malformed percent-encoding"),
        (b"<x/>", "Content-Type: text/plain\r\n", "unsupported Content-Type text/plain"),
    ],
)
async def test_body_parse_errors_300(
    client: Client, body: bytes, headers: str, reason: str
) -> None:
    status, text = await raw_request(client, "/", "POST", body, headers)
    assert status == 200
    assert text == envelope(300, f"Error occured during parsing message: '{reason}'")


async def test_body_too_large_is_300(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.post("/", data={"command": "ListActiveCalls", "x": "y" * (1024**2 + 10)})
    assert code_message(await resp.text()) == (
        300,
        "Error occured during parsing message: 'request body too large'",
    )


async def test_empty_body_with_any_content_type_is_ignored(client: Client) -> None:
    resp = await client.post(
        "/?command=ListActiveCalls", data=b"", headers={"Content-Type": "text/plain"}
    )
    assert await resp.text() == EMPTY_CALLS


@pytest.mark.parametrize(
    "path", ["/", "/?foo=bar", "/?command=", "/?command=+", "/?command=%20%09", "/api"]
)
async def test_missing_command_302(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'command' for command ''"
    )


@pytest.mark.parametrize("name", NOT_IMPLEMENTED)
async def test_documented_but_unimplemented_commands_301(client: Client, name: str) -> None:
    # Parameters are not checked for an unimplemented command (301 comes first, spec 4.2).
    resp = await client.get(f"/?command={name}")
    assert await resp.text() == envelope(301, f"Not implemented command: '{name}'")
    resp = await client.get(f"/api?command={name.lower()}&CallId=x")
    assert await resp.text() == envelope(301, f"Not implemented command: '{name.lower()}'")


def test_registry_knows_every_documented_name() -> None:
    registry = default_registry()
    implemented = {
        "ListActiveCalls",
        "Hangup",
        "Hold",
        "Unhold",
        "Forward",
        "BlindTransfer",
        "AttendedTransfer",
        "AddConfig",
        "GetConfig",
        "ModifyConfig",
        "RemoveConfig",
        "ListExtensions",
        "ListExtensionTypes",
        "SendDTMF",
        "Play",
        "Speak",
        "Record",
        "GetCallHistory",
        "SendAlarmNotification",
    }
    for name in NOT_IMPLEMENTED:
        command = registry.lookup(name)
        assert command is not None and command.handler is None, name
    for name in implemented:
        command = registry.lookup(name.upper())
        assert command is not None and command.handler is not None and command.name == name
    forward = registry.lookup("forwardcall")
    history = registry.lookup("ListCallHistory")
    assert forward is not None and forward.name == "Forward"
    assert history is not None and history.name == "GetCallHistory"


@pytest.mark.parametrize(
    ("query", "echo"),
    [
        ("command=Foo", "Foo"),
        (
            "command=CallSetup%20",
            "CallSetup ",
        ),  # surrounding spaces are ignored for lookup only
        ("command=%3Cx%3E%26", "&lt;x&gt;&amp;"),
        ("command=List+Active+Calls", "List Active Calls"),
    ],
)
async def test_unknown_command_301_echoes_value_as_sent(
    client: Client, query: str, echo: str
) -> None:
    resp = await client.get(f"/?{query}")
    assert await resp.text() == envelope(301, f"Not implemented command: '{echo}'")


@pytest.mark.parametrize(
    "query",
    [
        "command=ListActiveCalls",
        "Command=ListActiveCalls",
        "COMMAND=listactivecalls",
        "command=LISTACTIVECALLS",
        "command=ListActiveCalls&command=Foo",
        "command=&command=ListActiveCalls",
        "%63ommand=ListActiveCalls",
        "command=%20ListActiveCalls%20",
        "+command+=ListActiveCalls",
    ],
)
async def test_case_insensitive_names_and_values(client: Client, query: str) -> None:
    resp = await client.get(f"/?{query}")
    assert await resp.text() == EMPTY_CALLS


async def test_first_occurrence_of_command_wins(client: Client) -> None:
    resp = await client.get("/?command=Foo&Command=ListActiveCalls")
    assert await resp.text() == envelope(301, "Not implemented command: 'Foo'")


async def test_unknown_extra_parameters_are_ignored(client: Client) -> None:
    resp = await client.get("/?command=ListActiveCalls&Bogus=1&NotificationName=x")
    assert await resp.text() == EMPTY_CALLS


async def test_missing_parameter_302_uses_canonical_names(client: Client) -> None:
    resp = await client.get("/?command=hangup")
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'CallId' for command 'Hangup'"
    )


async def test_invalid_parameter_value_302(client: Client) -> None:
    resp = await client.get("/?command=Hangup&CallId=" + "x" * 65)
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'CallId' for command 'Hangup'"
    )


async def test_address_control_307(make_client: ClientFactory) -> None:
    denied = await make_client(ApiSettings(auth_required=False, allowed_networks=["10.0.0.0/8"]))
    resp = await denied.get("/?command=ListActiveCalls")
    assert await resp.text() == envelope(307, "Use API from this address is forbidden")
    carved = await make_client(
        ApiSettings(
            auth_required=False, allowed_networks=["127.0.0.0/8"], denied_addresses=["127.0.0.1"]
        )
    )
    assert code_message(await (await carved.get("/?command=ListActiveCalls")).text())[0] == 307
    allowed = await make_client(ApiSettings(auth_required=False, allowed_networks=["127.0.0.0/8"]))
    assert await (await allowed.get("/?command=ListActiveCalls")).text() == EMPTY_CALLS


async def test_order_307_before_300_before_auth(make_client: ClientFactory) -> None:
    denied = await make_client(ApiSettings(denied_addresses=["127.0.0.1"]))
    _, body = await raw_request(denied, "/?command=%zz")
    assert code_message(body)[0] == 307
    authed = await make_client(ApiSettings())
    _, body = await raw_request(authed, "/?command=%zz")
    assert code_message(body)[0] == 300
    resp = await authed.get("/?command=Foo")
    assert code_message(await resp.text())[0] == 304
    resp = await authed.get("/")
    assert code_message(await resp.text())[0] == 304


async def test_unexpected_failure_is_http_500_without_details(
    client: Client, pbx: FakePbx, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> list[ActiveCallInfo]:
        raise RuntimeError("database on fire")

    pbx.active_calls = boom  # type: ignore[method-assign]
    resp = await client.get("/?command=ListActiveCalls&Password=HUSH")
    assert resp.status == 500
    assert "database on fire" not in await resp.text()
    assert "HTTP API request failed unexpectedly" in caplog.text
    assert "HUSH" not in caplog.text


def test_registry_rejects_duplicate_names_and_lists_each_command_once() -> None:
    registry = CommandRegistry([Command("Forward", aliases=("ForwardCall",))])
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Command("forwardcall"))
    assert [c.name for c in registry.commands()] == ["Forward"]
    assert len(default_registry().commands()) == len(NOT_IMPLEMENTED) + 22
