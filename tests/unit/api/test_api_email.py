"""SendEmail over the HTTP API (spec 8.15) with a real EmailSender and an aiosmtpd server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session
from api_support import OPEN, FakePbx, FakeStore, envelope

from pypbx.api.commands.email import make_send_email_command
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, CommandRegistry
from pypbx.api.server import ApiService
from pypbx.messaging import EmailSender, EmailSettings

Client = TestClient[Any, Any]
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
OK_RESPONSE = re.compile(
    re.escape(envelope(200, "Command successfully executed", "  <EmailId>@</EmailId>")).replace(
        "@", f"({GUID})"
    )
)
EXT = "command=SendEmail&ApiExtension=9994"
BASE = f"{EXT}&Recipient=abc%40another.example"
NOT_FOUND = "Destination of the SMS is not found"


def invalid(param: str, reason: str = "") -> str:
    message = f"Missing or invalid parameter '{param}' for command 'SendEmail'"
    return envelope(302, f"{message}: {reason}" if reason else message)


@dataclass
class Mailbox:
    """aiosmtpd handler: what was delivered; recipients it refuses."""

    delivered: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.delivered.append((envelope.mail_from or "", list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    loop = asyncio.get_running_loop()
    handler = Mailbox()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp.test", loop=loop), "127.0.0.1", 0
    )
    yield handler, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def email_settings(mailbox: tuple[Mailbox, int], tmp_path: Path) -> EmailSettings:
    (tmp_path / "attach").mkdir()
    return EmailSettings(
        "127.0.0.1",
        mailbox[1],
        from_address="pbx@example.com",
        timeout=5.0,
        local_hostname="pbx.test",
        attachment_dirs=(tmp_path / "attach",),
    )


MakeClient = Callable[[Command], Awaitable[Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """A client for an app whose registry holds just the given command."""
    clients: list[Client] = []

    async def factory(command: Command) -> Client:
        service = ApiService(OPEN, FakeStore(), FakePbx(), CommandRegistry([command]))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", service.handle)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient, email_settings: EmailSettings) -> Client:
    sender = EmailSender(email_settings)
    return await make_client(make_send_email_command(lambda: sender))


async def get(client: Client, query: str, path: str = "/") -> str:
    response = await client.get(f"{path}?{query}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    return await response.text()


# ---- success -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api"])
async def test_documented_example_is_sent(
    client: Client, mailbox: tuple[Mailbox, int], path: str
) -> None:
    query = (
        "command=SendEmail&ApiExtension=9994&Sender=test%40domain.example"
        "&Recipient=abc%40another.example&Message=Hello+world&Subject=TestSubject"
    )

    text = await get(client, query, path)

    match = OK_RESPONSE.fullmatch(text)
    assert match, text  # EmailId in both dialects (spec 8.15 [REC])
    [(mail_from, rcpt_tos, message)] = mailbox[0].delivered
    assert (mail_from, rcpt_tos) == ("pbx@example.com", ["abc@another.example"])
    assert message["From"] == "test@domain.example"
    assert message["Subject"] == "TestSubject"
    assert message["Message-ID"] == f"<{match.group(1)}@example.com>"
    assert message.get_content() == "Hello world\n"


async def test_defaults_empty_subject_and_body_and_provider_sender(
    client: Client, mailbox: tuple[Mailbox, int]
) -> None:
    assert OK_RESPONSE.fullmatch(await get(client, BASE))

    [(_, _, message)] = mailbox[0].delivered
    assert message["From"] == "pbx@example.com"
    assert message["Subject"] == ""
    assert message.get_content() == "\n"


async def test_utf8_values_posted_as_a_form(client: Client, mailbox: tuple[Mailbox, int]) -> None:
    body = f"{BASE}&Subject={quote('Grüße ☎')}&Message={quote('Rückruf bitte: 0049 …')}"
    response = await client.post(
        "/api",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert OK_RESPONSE.fullmatch(await response.text())
    [(_, _, message)] = mailbox[0].delivered
    assert message["Subject"] == "Grüße ☎"
    assert message.get_content().replace("\r\n", "\n") == "Rückruf bitte: 0049 …\n"


async def test_command_name_is_case_insensitive(client: Client) -> None:
    assert OK_RESPONSE.fullmatch(await get(client, BASE.replace("SendEmail", "sendemail")))


async def test_attachment_under_the_attachment_directory(
    client: Client, mailbox: tuple[Mailbox, int], email_settings: EmailSettings
) -> None:
    root = email_settings.attachment_dirs[0]
    (root / "receipt.txt").write_bytes(b"Total: 12.50\n")
    (root / "b.bin").write_bytes(b"\x00\x01")
    spec = quote(f"{root / 'receipt.txt'}; {root / 'b.bin'};")

    assert OK_RESPONSE.fullmatch(await get(client, f"{BASE}&Attachments={spec}"))

    [(_, _, message)] = mailbox[0].delivered
    attached = [(p.get_filename(), p.get_content()) for p in message.iter_attachments()]
    assert attached == [("receipt.txt", "Total: 12.50\n"), ("b.bin", b"\x00\x01")]


# ---- 302 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        (EXT, "Recipient"),
        (f"{EXT}&Recipient=+", "Recipient"),
        (f"{EXT}&Recipient=abc", "Recipient"),
        (f"{EXT}&Recipient=a%40b.example%2Cc%40d.example", "Recipient"),
        (f"{EXT}&Recipient=a%40b.example%0D%0ABcc%3Ax%40y.example", "Recipient"),
        ("command=SendEmail&Recipient=abc%40another.example", "ApiExtension"),
        ("command=SendEmail", "ApiExtension"),  # first in table order
        ("command=SendEmail&ApiExtension=99%2094&Recipient=abc%40another.example", "ApiExtension"),
        (f"{BASE}&Sender=nobody", "Sender"),
        (f"{EXT}&Sender=nobody", "Sender"),  # before Recipient
        (f"{BASE}&Sender=me%40x.example%0ABcc%3Ay%40z.example", "Sender"),
        (f"{BASE}&Subject=Hi%0D%0ABcc%3A+spy%40evil.example", "Subject"),
        (f"{BASE}&Subject=Hi%0Athere", "Subject"),
    ],
)  # fmt: skip
async def test_invalid_parameters(
    client: Client, mailbox: tuple[Mailbox, int], query: str, param: str
) -> None:
    assert await get(client, query) == invalid(param)
    assert mailbox[0].delivered == []


async def test_body_over_the_limit_names_message(
    make_client: MakeClient, email_settings: EmailSettings, mailbox: tuple[Mailbox, int]
) -> None:
    sender = EmailSender(replace(email_settings, max_body_bytes=5))
    client = await make_client(make_send_email_command(lambda: sender))

    text = await get(client, f"{BASE}&Message=%C3%BC%C3%BC%C3%BC")

    assert text == invalid("Message", "body is 6 bytes, more than the limit of 5")
    assert mailbox[0].delivered == []


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("relative.txt", "'relative.txt' is not an absolute path"),
        ("C:\\example.txt", "'C:\\\\example.txt' is not an absolute path"),
        ("/etc/passwd", "'/etc/passwd' is outside the attachment directories"),
        ("{root}/../secret.txt", "'{root}/../secret.txt' is outside the attachment directories"),
        ("{root}/link.txt", "'{root}/link.txt' is outside the attachment directories"),
        ("{root}/missing.txt", "'{root}/missing.txt' does not exist"),
        ("{root}/sub", "'{root}/sub' is not a file"),
        ("{root}/ok.txt;/etc/hosts", "'/etc/hosts' is outside the attachment directories"),
    ],
)
async def test_unusable_attachments(
    client: Client,
    email_settings: EmailSettings,
    mailbox: tuple[Mailbox, int],
    spec: str,
    reason: str,
) -> None:
    root = email_settings.attachment_dirs[0]
    (root.parent / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    (root / "sub").mkdir()
    (root / "ok.txt").write_text("ok")
    spec, reason = spec.format(root=root), reason.format(root=root)

    text = await get(client, f"{BASE}&Attachments={quote(spec)}")

    assert text == invalid("Attachments", reason)
    assert mailbox[0].delivered == []


async def test_attachments_refused_when_no_directory_is_configured(
    make_client: MakeClient, email_settings: EmailSettings, tmp_path: Path
) -> None:
    sender = EmailSender(replace(email_settings, attachment_dirs=()))
    client = await make_client(make_send_email_command(lambda: sender))
    (tmp_path / "a.txt").write_text("a")

    text = await get(client, f"{BASE}&Attachments={quote(str(tmp_path / 'a.txt'))}")

    assert text == invalid("Attachments", "attachments are not enabled on this PBX")


# ---- ApiExtension: default and 401 -------------------------------------------------------


async def test_default_api_extension_makes_the_parameter_optional(
    make_client: MakeClient, email_settings: EmailSettings
) -> None:
    seen: list[str] = []

    async def check(ctx: CommandContext, number: str) -> bool:
        seen.append(number)
        return True

    sender = EmailSender(email_settings)
    command = make_send_email_command(
        lambda: sender, default_api_extension="9990", api_extension_check=check
    )
    client = await make_client(command)

    assert OK_RESPONSE.fullmatch(await get(client, "command=SendEmail&Recipient=a%40b.example"))
    assert OK_RESPONSE.fullmatch(await get(client, f"{BASE}"))
    assert seen == ["9990", "9994"]


@pytest.fixture
async def refusing_client(make_client: MakeClient, email_settings: EmailSettings) -> Client:
    async def check(ctx: CommandContext, number: str) -> bool:
        return number == "1000"

    sender = EmailSender(email_settings)
    return await make_client(make_send_email_command(lambda: sender, api_extension_check=check))


async def test_unusable_api_extension_is_401(
    refusing_client: Client, mailbox: tuple[Mailbox, int]
) -> None:
    assert await get(refusing_client, BASE) == envelope(
        401, "API extension '9994' unavailable, please check configuration or permissions"
    )
    assert mailbox[0].delivered == []
    ok = BASE.replace("9994", "1000")
    assert OK_RESPONSE.fullmatch(await get(refusing_client, ok))


async def test_parameter_errors_come_before_401(refusing_client: Client) -> None:
    text = await get(refusing_client, f"{BASE}&Attachments=relative")
    assert text == invalid("Attachments", "'relative' is not an absolute path")


# ---- 501 ---------------------------------------------------------------------------------


async def test_no_provider_is_501(make_client: MakeClient) -> None:
    client = await make_client(make_send_email_command(lambda: None))

    assert await get(client, BASE) == envelope(501, NOT_FOUND)
    # Parameters are still checked first (spec 4.2).
    assert await get(client, EXT) == invalid("Recipient")


async def test_no_sender_address_anywhere_is_501(
    make_client: MakeClient, email_settings: EmailSettings, mailbox: tuple[Mailbox, int]
) -> None:
    sender = EmailSender(replace(email_settings, from_address=None))
    client = await make_client(make_send_email_command(lambda: sender))

    assert await get(client, BASE) == envelope(501, NOT_FOUND)
    assert OK_RESPONSE.fullmatch(await get(client, f"{BASE}&Sender=app%40x.example"))
    assert [d[0] for d in mailbox[0].delivered] == ["app@x.example"]


async def test_smtp_server_unreachable_is_501_with_the_reason(
    make_client: MakeClient, email_settings: EmailSettings
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = EmailSender(replace(email_settings, port=port))
    client = await make_client(make_send_email_command(lambda: sender))

    assert await get(client, BASE) == envelope(
        501, f"{NOT_FOUND}: cannot connect to the SMTP server: connection refused"
    )


async def test_recipient_refused_is_501_with_the_smtp_code(
    client: Client, mailbox: tuple[Mailbox, int]
) -> None:
    mailbox[0].refuse["abc@another.example"] = "550 5.1.1 No such user"

    assert await get(client, BASE) == envelope(
        501,
        f"{NOT_FOUND}: the SMTP server refused the recipient(s) "
        "'abc@another.example': 550 5.1.1 No such user",
    )
