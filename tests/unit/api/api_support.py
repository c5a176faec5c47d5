"""Fakes and helpers for the HTTP API tests: an in-memory store, a scripted PBX, and the
exact response text builder. (Uniquely named so tests can import it next to other
test directories' helpers.)"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from pypbx.api.settings import ApiSettings
from pypbx.pbx.control import ActiveCallInfo, CallNotFoundError, CallRequest, RecordRequest
from pypbx.store.records import (
    AlreadyExistsError,
    ExtensionRecord,
    NotFoundError,
    OfficeUserRecord,
)

OPEN = ApiSettings(auth_required=False)

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]


class FakeStore:
    """Just the methods the API uses, with the contract's error behaviour."""

    def __init__(self) -> None:
        self.extensions: dict[str, ExtensionRecord] = {}
        self.users: dict[str, OfficeUserRecord] = {}
        self.get_user_calls = 0

    async def add_extension(self, record: ExtensionRecord) -> None:
        if record.id in self.extensions:
            raise AlreadyExistsError(record.id)
        self.extensions[record.id] = dataclasses.replace(record)

    async def get_extension(self, extension_id: str) -> ExtensionRecord | None:
        found = self.extensions.get(extension_id)
        return dataclasses.replace(found) if found else None

    async def update_extension(self, record: ExtensionRecord) -> None:
        if record.id not in self.extensions:
            raise NotFoundError(record.id)
        self.extensions[record.id] = dataclasses.replace(record)

    async def remove_extension(self, extension_id: str) -> bool:
        return self.extensions.pop(extension_id, None) is not None

    async def list_extensions(self, type: str | None = None) -> list[ExtensionRecord]:
        return [e for e in self.extensions.values() if type is None or e.type == type]

    async def get_user(self, username: str) -> OfficeUserRecord | None:
        self.get_user_calls += 1
        return self.users.get(username)


class FakePbx:
    """Scripted PbxControl: fixed call list, per-id hangup outcomes, recorded changes."""

    def __init__(self) -> None:
        self.calls: list[ActiveCallInfo] = []
        self.hangup_errors: dict[str, Exception] = {}
        self.hung_up: list[str] = []
        self.errors: dict[tuple[str, str], Exception] = {}  # (operation, call id) -> error
        self.operations: list[tuple[str, ...]] = []
        self.registered: set[str] = set()
        self.changed: list[str] = []
        # Play/Speak/Record/SendDTMF as invoked: (operation, call id, arguments by name);
        # `errors` applies to them too.
        self.media: list[tuple[str, str, dict[str, object]]] = []
        self.placed: list[tuple[CallRequest, str | None]] = []  # Call commands
        self.call_error: Exception | None = None
        self.finished_urls: list[str | None] = []  # BlindTransfer FinishedUrl values

    def active_calls(self) -> list[ActiveCallInfo]:
        return list(self.calls)

    async def hangup(self, call_id: str) -> None:
        if call_id in self.hangup_errors:
            raise self.hangup_errors[call_id]
        if call_id not in {c.call_id for c in self.calls}:
            raise CallNotFoundError(call_id)
        self.hung_up.append(call_id)

    def _operate(self, operation: str, call_id: str, *args: str) -> None:
        if (operation, call_id) in self.errors:
            raise self.errors[(operation, call_id)]
        if call_id not in {c.call_id for c in self.calls}:
            raise CallNotFoundError(call_id)
        self.operations.append((operation, call_id, *args))

    async def hold(self, call_id: str) -> None:
        self._operate("hold", call_id)

    async def unhold(self, call_id: str) -> None:
        self._operate("unhold", call_id)

    async def forward(self, call_id: str, destination: str) -> None:
        self._operate("forward", call_id, destination)

    async def call(self, request: CallRequest, username: str | None) -> str:
        """The Call command: `call_error` (if set) is raised, else a new id is returned."""
        self.placed.append((request, username))
        if self.call_error is not None:
            raise self.call_error
        return "NeWcAl"

    async def blind_transfer(
        self, call_id: str, target: str, transferor_party: str, finished_url: str | None = None
    ) -> None:
        self._operate("blind_transfer", call_id, target, transferor_party)
        self.finished_urls.append(finished_url)

    async def attended_transfer(self, transferred_id: str, target_id: str) -> None:
        if target_id not in {c.call_id for c in self.calls}:
            raise CallNotFoundError(target_id)
        self._operate("attended_transfer", transferred_id, target_id)

    def _media(self, operation: str, call_id: str, **arguments: object) -> None:
        self.media.append((operation, call_id, arguments))
        if (operation, call_id) in self.errors:
            raise self.errors[(operation, call_id)]
        if call_id not in {c.call_id for c in self.calls}:
            raise CallNotFoundError(call_id)

    async def play(
        self, call_id: str, party: str, audio_file: str, *, repeat: bool, timeout: int | None
    ) -> None:
        self._media(
            "play", call_id, party=party, audio_file=audio_file, repeat=repeat, timeout=timeout
        )

    async def speak(
        self, call_id: str, party: str, text: str, *, language: str | None, voice: str | None
    ) -> None:
        self._media("speak", call_id, party=party, text=text, language=language, voice=voice)

    async def record(self, call_id: str, request: RecordRequest) -> None:
        self._media("record", call_id, request=request)

    async def send_dtmf(self, call_id: str, party: str, keys: str) -> None:
        self._media("send_dtmf", call_id, party=party, keys=keys)

    def is_registered(self, extension_id: str) -> bool:
        return extension_id in self.registered

    async def extension_changed(self, extension_id: str) -> None:
        self.changed.append(extension_id)


def envelope(code: int, message: str, *payload_lines: str) -> str:
    """The exact response text for a code, message and already-indented payload lines."""
    lines = [
        '<?xml version="1.0"?>',
        '<Response xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">',
        f"  <Code>{code}</Code>",
        f"  <Message>{message}</Message>",
        *payload_lines,
        "</Response>",
    ]
    return "\n".join(lines)


def block(xml: str) -> tuple[str, ...]:
    """Payload lines from an indented example block (as pasted from the spec)."""
    return tuple(line for line in xml.strip("\n").split("\n"))


def code_message(text: str) -> tuple[int, str]:
    root = ET.fromstring(text)
    return int(root.findtext("Code") or "0"), root.findtext("Message") or ""


async def raw_request(
    client: Client, target: str, method: str = "GET", body: bytes = b"", headers: str = ""
) -> tuple[int, str]:
    """Send a request target byte for byte (the client library would re-quote `%zz`)."""
    import asyncio

    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    )
    writer.write(head.encode("ascii") + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload.decode("utf-8")
