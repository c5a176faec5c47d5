"""The Call command (spec 8.1): what reaches the PBX, defaults, and the 401/402/302 codes."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from api_support import ClientFactory, FakePbx, envelope

from pypbx.api.settings import ApiSettings
from pypbx.pbx.control import ApiExtensionError, CallFailedError, CallRequest

Client = TestClient[Any, Any]
OK = envelope(200, "Command successfully executed")


async def get(client: Client, query: str) -> str:
    response = await client.get(f"/?{query}")
    assert response.status == 200
    return await response.text()


async def test_call_passes_every_parameter(client: Client, pbx: FakePbx) -> None:
    query = (
        "command=Call&Dialed=1001&ApiExtension=9994&CallerId=3000&CallerDisplayName=John+Smith"
        "&Url=http%3A%2F%2Fapp.example%2Fconnected&ErrorUrl=http%3A%2F%2Fapp.example%2Ferr"
        "&FinishedUrl=http%3A%2F%2Fapp.example%2Fdone&RingTime=20"
        "&ResponseOzML=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E"
    )
    assert await get(client, query) == OK
    assert pbx.placed == [
        (
            CallRequest(
                api_extension="9994",
                dialed="1001",
                caller_id="3000",
                caller_display_name="John Smith",
                url="http://app.example/connected",
                error_url="http://app.example/err",
                response_ozml="<Response><Hangup/></Response>",
                finished_url="http://app.example/done",
                ring_time=20,
            ),
            None,
        )
    ]


async def test_dialled_alias_and_lower_case_names(client: Client, pbx: FakePbx) -> None:
    assert await get(client, "command=call&dialled=103&apiextension=9990") == OK
    assert pbx.placed[0][0] == CallRequest(api_extension="9990", dialed="103")


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("command=Call&ApiExtension=9994", "Dialed"),
        ("command=Call&Dialed=1001", "ApiExtension"),
        ("command=Call&Dialed=1001&ApiExtension=9994&Url=ftp%3A%2F%2Fx", "Url"),
        ("command=Call&Dialed=1001&ApiExtension=9994&RingTime=0", "RingTime"),
        ("command=Call&Dialed=1001&ApiExtension=9994&ErrorUrl=nothing", "ErrorUrl"),
    ],
)
async def test_bad_or_missing_parameters_are_302(
    client: Client, pbx: FakePbx, query: str, param: str
) -> None:
    expected = envelope(302, f"Missing or invalid parameter '{param}' for command 'Call'")
    assert await get(client, query) == expected
    assert pbx.placed == []


async def test_default_api_extension_stands_in(make_client: ClientFactory, pbx: FakePbx) -> None:
    client = await make_client(ApiSettings(auth_required=False, default_api_extension="9990"))
    assert await get(client, "command=Call&Dialed=1001") == OK
    assert pbx.placed[0][0].api_extension == "9990"


async def test_unavailable_api_extension_is_401(client: Client, pbx: FakePbx) -> None:
    pbx.call_error = ApiExtensionError("9986")
    expected = envelope(
        401, "API extension '9986' unavailable, please check configuration or permissions"
    )
    assert await get(client, "command=Call&Dialed=1001&ApiExtension=9986") == expected


async def test_failed_connect_is_402_with_the_state(client: Client, pbx: FakePbx) -> None:
    pbx.call_error = CallFailedError("2310", "Busy")
    expected = envelope(402, "Call connect to '2310' failed with result state 'Busy'")
    assert await get(client, "command=Call&Dialed=2310&ApiExtension=9994") == expected
