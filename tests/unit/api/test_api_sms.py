"""SendSms over the HTTP API (spec 8.14): parameters, codes and the SmsId element, against a
scripted message router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from api_support import OPEN, FakePbx, FakeStore, envelope

from pypbx.api.commands.sms import make_send_sms_command
from pypbx.api.registry import CommandRegistry
from pypbx.api.server import ApiService
from pypbx.api.settings import ApiSettings
from pypbx.pbx.control import ApiExtensionError
from pypbx.pbx.messages import MessageTooLargeError, SmsDestinationNotFoundError

Client = TestClient[Any, Any]
SMS_ID = "6b5c6978-0cd6-4a58-86fc-3d1b279b9201"
OK = envelope(200, "Command successfully executed", f"  <SmsId>{SMS_ID}</SmsId>")
NOT_FOUND = envelope(501, "Destination of the SMS is not found")
BASE = "command=SendSms&ApiExtension=9994&Recipient=2000&Message=Hello+world"


def invalid(param: str, reason: str = "") -> str:
    message = f"Missing or invalid parameter '{param}' for command 'SendSms'"
    return envelope(302, f"{message}: {reason}" if reason else message)


@dataclass
class FakeRouter:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    error: Exception | None = None

    async def send_sms(
        self,
        api_extension: str,
        sender: str | None,
        recipient: str,
        message: str,
        delivery_report_url: str | None,
        *,
        username: str | None = None,
    ) -> str:
        self.calls.append(
            (api_extension, sender, recipient, message, delivery_report_url, username)
        )
        if self.error is not None:
            raise self.error
        return SMS_ID


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def factory(router: FakeRouter | None, settings: ApiSettings = OPEN) -> Client:
        command = make_send_sms_command(lambda: router)
        service = ApiService(settings, FakeStore(), FakePbx(), CommandRegistry([command]))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", service.handle)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


async def get(client: Client, query: str, path: str = "/") -> str:
    response = await client.get(f"{path}?{query}")
    assert response.status == 200
    return await response.text()


@pytest.mark.parametrize("path", ["/", "/api"])
async def test_documented_example(make_client: MakeClient, path: str) -> None:
    router = FakeRouter()
    client = await make_client(router)
    query = (
        "command=SendSms&ApiExtension=9994&Sender=%2B061554669&Recipient=2000"
        "&Message=Hello+world&DeliveryReportURL=http%3A%2F%2Fapp.example%2Fdlr"
    )
    assert await get(client, query, path) == OK
    assert router.calls == [
        ("9994", "+061554669", "2000", "Hello world", "http://app.example/dlr", None)
    ]


async def test_optional_parameters_and_o10_spelling(make_client: MakeClient) -> None:
    router = FakeRouter()
    client = await make_client(router)
    assert await get(client, BASE) == OK
    assert await get(client, f"{BASE}&DelivaryReportURL=https://x.example/r") == OK
    assert [call[1] for call in router.calls] == [None, None]
    assert [call[4] for call in router.calls] == [None, "https://x.example/r"]


async def test_message_text_is_sent_as_given(make_client: MakeClient) -> None:
    router = FakeRouter()
    client = await make_client(router)
    body = f"{BASE.split('&Message')[0]}&Message=%20Gr%C3%BC%C3%9Fe%20%E2%98%8E%20"
    response = await client.post(
        "/", data=body.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert await response.text() == OK
    assert router.calls[0][3] == " Grüße ☎ "


async def test_default_api_extension(make_client: MakeClient) -> None:
    router = FakeRouter()
    client = await make_client(router, replace(OPEN, default_api_extension="9990"))
    assert await get(client, "command=SendSms&Recipient=2000&Message=x") == OK
    assert router.calls[0][0] == "9990"
    plain = await make_client(FakeRouter())
    assert await get(plain, "command=SendSms&Recipient=2000&Message=x") == invalid("ApiExtension")


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("command=SendSms&ApiExtension=9994&Message=x", "Recipient"),
        ("command=SendSms&ApiExtension=9994&Recipient=2000", "Message"),
        (BASE.replace("ApiExtension=9994", "ApiExtension=99%2094"), "ApiExtension"),
        (BASE.replace("Recipient=2000", "Recipient=20%2000"), "Recipient"),
        (f"{BASE}&Sender=a%20b", "Sender"),
        (f"{BASE}&DeliveryReportURL=ftp://x/y", "DeliveryReportURL"),
    ],
)
async def test_invalid_parameters(make_client: MakeClient, query: str, param: str) -> None:
    router = FakeRouter()
    client = await make_client(router)
    assert await get(client, query) == invalid(param)
    assert router.calls == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ApiExtensionError("9994"),
            envelope(
                401,
                "API extension '9994' unavailable, please check configuration or permissions",
            ),
        ),
        (SmsDestinationNotFoundError("2000"), NOT_FOUND),
        (
            MessageTooLargeError("message larger than 61440 bytes"),
            invalid("Message", "message larger than 61440 bytes"),
        ),
    ],
)
async def test_router_refusals(make_client: MakeClient, error: Exception, expected: str) -> None:
    client = await make_client(FakeRouter(error=error))
    assert await get(client, BASE) == expected


async def test_without_messaging_every_destination_is_unknown(make_client: MakeClient) -> None:
    client = await make_client(None)
    assert await get(client, BASE) == NOT_FOUND
