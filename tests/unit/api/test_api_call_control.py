"""Hold, Unhold, Forward and BlindTransfer over the HTTP API (spec 8.2-8.5): parameters and
status codes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from api_support import FakePbx, envelope

from pypbx.pbx.control import (
    ActiveCallInfo,
    InappropriateStateError,
    UnroutableDestinationError,
)
from pypbx.pbx.states import CallState

Client = TestClient[Any, Any]
OK = envelope(200, "Command successfully executed")


@pytest.fixture
def with_call(pbx: FakePbx) -> FakePbx:
    pbx.calls = [
        ActiveCallInfo(
            call_id="uteom",
            state=CallState.IN_CALL,
            source="1000",
            caller_id="1000",
            destination="1001",
            caller_dialed="1001",
            callee_dialed="1001",
            start_time=datetime(2013, 7, 1, 8, 49, 7, tzinfo=UTC),
            ring_duration=2.0,
            talk_duration=956.0,
        )
    ]
    return pbx


@pytest.mark.parametrize(("command", "operation"), [("Hold", "hold"), ("Unhold", "unhold")])
async def test_hold_and_unhold(
    client: Client, with_call: FakePbx, command: str, operation: str
) -> None:
    resp = await client.get(f"/?command={command}&CallId=uteom")
    assert await resp.text() == OK
    assert with_call.operations == [(operation, "uteom")]


@pytest.mark.parametrize("command", ["Hold", "Unhold", "Forward"])
async def test_unknown_call_601(client: Client, with_call: FakePbx, command: str) -> None:
    resp = await client.get(f"/?command={command}&CallId=XzeOK&Destination=500")
    assert await resp.text() == envelope(601, "Call not found with ID 'XzeOK'")
    assert with_call.operations == []


@pytest.mark.parametrize(
    ("command", "operation"), [("Hold", "hold"), ("Unhold", "unhold"), ("Forward", "forward")]
)
async def test_wrong_state_303(
    client: Client, with_call: FakePbx, command: str, operation: str
) -> None:
    with_call.errors[(operation, "uteom")] = InappropriateStateError("uteom")
    resp = await client.get(f"/?command={command}&CallId=uteom&Destination=500")
    assert await resp.text() == envelope(303, f"Command '{command}' cannot be used here")


@pytest.mark.parametrize("command", ["Hold", "Unhold", "Forward"])
async def test_missing_call_id_302(client: Client, command: str) -> None:
    resp = await client.get(f"/?command={command}&Destination=500")
    assert await resp.text() == envelope(
        302, f"Missing or invalid parameter 'CallId' for command '{command}'"
    )


async def test_forward_rings_the_new_destination(client: Client, with_call: FakePbx) -> None:
    resp = await client.get("/?command=Forward&CallId=uteom&Destination=500")
    assert await resp.text() == OK
    assert with_call.operations == [("forward", "uteom", "500")]


async def test_forward_o10_alias(client: Client, with_call: FakePbx) -> None:
    resp = await client.get("/api?command=ForwardCall&callid=uteom&destination=%2B36111")
    assert await resp.text() == OK
    assert with_call.operations == [("forward", "uteom", "+36111")]


@pytest.mark.parametrize("query", ["", "&Destination=", "&Destination=+"])
async def test_forward_missing_destination_302(client: Client, query: str) -> None:
    resp = await client.get(f"/?command=Forward&CallId=uteom{query}")
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'Destination' for command 'Forward'"
    )


async def test_forward_unroutable_destination_302(client: Client, with_call: FakePbx) -> None:
    with_call.errors[("forward", "uteom")] = UnroutableDestinationError("999")
    resp = await client.get("/?command=Forward&CallId=uteom&Destination=999")
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'Destination' for command 'Forward'"
    )


async def test_blind_transfer(client: Client, with_call: FakePbx) -> None:
    resp = await client.get(
        "/?command=BlindTransfer&CallId=uteom&Target=1002&TransferorParty=Callee"
    )
    assert await resp.text() == OK
    assert with_call.operations == [("blind_transfer", "uteom", "1002", "callee")]


async def test_blind_transfer_o10_typo_alias(client: Client, with_call: FakePbx) -> None:
    resp = await client.get(
        "/api?command=BlindTransfer&CallId=uteom&Target=1002&TranferorParty=caller"
    )
    assert await resp.text() == OK
    assert with_call.operations == [("blind_transfer", "uteom", "1002", "caller")]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("CallId=uteom&Target=1002", "TransferorParty"),
        ("CallId=uteom&Target=1002&TransferorParty=all", "TransferorParty"),
        ("CallId=uteom&TransferorParty=caller", "Target"),
        ("Target=1002&TransferorParty=caller", "CallId"),
    ],
)
async def test_blind_transfer_bad_parameters_302(
    client: Client, with_call: FakePbx, query: str, parameter: str
) -> None:
    resp = await client.get(f"/?command=BlindTransfer&{query}")
    assert await resp.text() == envelope(
        302, f"Missing or invalid parameter '{parameter}' for command 'BlindTransfer'"
    )
    assert with_call.operations == []


async def test_blind_transfer_unroutable_target_302(client: Client, with_call: FakePbx) -> None:
    with_call.errors[("blind_transfer", "uteom")] = UnroutableDestinationError("999")
    resp = await client.get(
        "/?command=BlindTransfer&CallId=uteom&Target=999&TransferorParty=caller"
    )
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'Target' for command 'BlindTransfer'"
    )


async def test_blind_transfer_wrong_state_303_and_unknown_601(
    client: Client, with_call: FakePbx
) -> None:
    with_call.errors[("blind_transfer", "uteom")] = InappropriateStateError("uteom")
    resp = await client.get("/?command=BlindTransfer&CallId=uteom&Target=1&TransferorParty=caller")
    assert await resp.text() == envelope(303, "Command 'BlindTransfer' cannot be used here")
    resp = await client.get("/?command=BlindTransfer&CallId=nope&Target=1&TransferorParty=caller")
    assert await resp.text() == envelope(601, "Call not found with ID 'nope'")


async def test_attended_transfer(client: Client, with_call: FakePbx) -> None:
    with_call.calls.append(replace(with_call.calls[0], call_id="HL1bE"))
    resp = await client.get("/?command=AttendedTransfer&TransferredCallId=uteom&TargetCallId=HL1bE")
    assert await resp.text() == OK
    assert with_call.operations == [("attended_transfer", "uteom", "HL1bE")]


async def test_attended_transfer_o10_typo_alias(client: Client, with_call: FakePbx) -> None:
    with_call.calls.append(replace(with_call.calls[0], call_id="HL1bE"))
    resp = await client.get(
        "/api?command=AttendedTransfer&TranferredCallId=uteom&TargetCallId=HL1bE"
    )
    assert await resp.text() == OK


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("TargetCallId=uteom", "TransferredCallId"), ("TransferredCallId=uteom", "TargetCallId")],
)
async def test_attended_transfer_missing_ids_302(
    client: Client, with_call: FakePbx, query: str, parameter: str
) -> None:
    resp = await client.get(f"/?command=AttendedTransfer&{query}")
    assert await resp.text() == envelope(
        302, f"Missing or invalid parameter '{parameter}' for command 'AttendedTransfer'"
    )


async def test_attended_transfer_601_names_the_unknown_call(
    client: Client, with_call: FakePbx
) -> None:
    resp = await client.get("/?command=AttendedTransfer&TransferredCallId=uteom&TargetCallId=x1")
    assert await resp.text() == envelope(601, "Call not found with ID 'x1'")
    resp = await client.get("/?command=AttendedTransfer&TransferredCallId=x2&TargetCallId=uteom")
    assert await resp.text() == envelope(601, "Call not found with ID 'x2'")


async def test_attended_transfer_303(client: Client, with_call: FakePbx) -> None:
    with_call.errors[("attended_transfer", "uteom")] = InappropriateStateError("uteom")
    resp = await client.get("/?command=AttendedTransfer&TransferredCallId=uteom&TargetCallId=uteom")
    assert await resp.text() == envelope(303, "Command 'AttendedTransfer' cannot be used here")
