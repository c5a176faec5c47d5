"""EmailSender against a real aiosmtpd server on 127.0.0.1 (port 0, on the test's loop)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from pypbx.messaging import (
    EmailNotConfiguredError,
    EmailSender,
    EmailSendError,
    EmailSettings,
    InvalidEmailError,
)

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
FROM = "pbx@example.com"


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        # The wire form ends lines with CRLF; compare contents with plain newlines.
        content = self.content.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    """aiosmtpd handler: records deliveries, refuses chosen recipients, can stall DATA."""

    delivered: list[Delivered] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    data_delay: float = 0.0
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.data_delay)
        content = envelope.original_content or b""
        self.delivered.append(
            Delivered(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                content,
                session.ssl is not None,
                bool(session.authenticated),
            )
        )
        return "250 2.0.0 Message accepted for delivery"

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.auth_attempts.append((login, password))
        # handled=False: aiosmtpd itself answers (235 or 535), as a real server would.
        return AuthResult(success=(login, password) == ("alice", "s3cret"), handled=False)


@dataclass
class SmtpServer:
    handler: Handler
    port: int
    connections: int = 0


StartServer = Callable[..., Any]


@pytest.fixture
async def start_smtp() -> AsyncIterator[StartServer]:
    """`await start_smtp(**smtp_kwargs)` -> a running aiosmtpd server; closed at teardown."""
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()

    async def start(server_ssl: ssl.SSLContext | None = None, **kwargs: Any) -> SmtpServer:
        handler = Handler()
        state = SmtpServer(handler, 0)

        def factory() -> SMTP:
            state.connections += 1
            return SMTP(handler, hostname="smtp.test", loop=loop, **kwargs)

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def settings_for(server: SmtpServer, **overrides: Any) -> EmailSettings:
    base = EmailSettings(
        "127.0.0.1", server.port, from_address=FROM, timeout=5.0, local_hostname="pbx.test"
    )
    return replace(base, **overrides)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (EC, so it is made in milliseconds)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---- delivery ----------------------------------------------------------------------------


async def test_plain_send_delivers_a_well_formed_message(start_smtp: StartServer) -> None:
    server = await start_smtp()
    before = time.time()

    email_id = await EmailSender(settings_for(server)).send(
        ["abc@another.example"], "TestSubject", "Hello world"
    )

    assert GUID.fullmatch(email_id)
    [got] = server.handler.delivered
    assert (got.mail_from, got.rcpt_tos) == (FROM, ["abc@another.example"])
    message = got.message
    assert message["From"] == FROM
    assert message["To"] == "abc@another.example"
    assert message["Subject"] == "TestSubject"
    assert message["Message-ID"] == f"<{email_id}@example.com>"
    assert message["MIME-Version"] == "1.0"
    assert abs(parsedate_to_datetime(message["Date"]).timestamp() - before) < 5
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Hello world\n"
    assert "Sender" not in message and "Bcc" not in message
    assert not got.tls and not got.authenticated


async def test_utf8_subject_and_body_survive_as_7bit_mime(start_smtp: StartServer) -> None:
    server = await start_smtp()
    subject = "Grüße aus Győr — 電話 ☎"
    body = "Sehr geehrte Frau Müller,\nIhr Rückruf: ☎ 0049 …\n" + "ä" * 500

    await EmailSender(settings_for(server)).send(["m@example.de"], subject, body)

    [got] = server.handler.delivered
    assert got.content.isascii()  # header encoded-words, quoted-printable body
    message = got.message
    assert message["Subject"] == subject
    assert message["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert message.get_content().replace("\r\n", "\n") == body + "\n"


async def test_multiple_recipients_get_one_message(start_smtp: StartServer) -> None:
    server = await start_smtp()
    to = ["a@example.org", "Bob Example <b@example.org>", "c@example.net"]

    await EmailSender(settings_for(server)).send(to, "s", "b")

    [got] = server.handler.delivered
    assert got.rcpt_tos == ["a@example.org", "b@example.org", "c@example.net"]
    assert got.message["To"] == "a@example.org, Bob Example <b@example.org>, c@example.net"


async def test_cc_in_headers_and_bcc_only_in_the_envelope(start_smtp: StartServer) -> None:
    server = await start_smtp()

    await EmailSender(settings_for(server)).send(
        ["to@example.org"], "s", "b", cc=["cc@example.org"], bcc=["hidden@example.org"]
    )

    [got] = server.handler.delivered
    assert got.rcpt_tos == ["to@example.org", "cc@example.org", "hidden@example.org"]
    assert got.message["Cc"] == "cc@example.org"
    assert "Bcc" not in got.message
    assert b"hidden@example.org" not in got.content


async def test_bcc_only_message_has_no_to_header(start_smtp: StartServer) -> None:
    server = await start_smtp()

    await EmailSender(settings_for(server)).send([], "s", "b", bcc=["hidden@example.org"])

    [got] = server.handler.delivered
    assert got.rcpt_tos == ["hidden@example.org"]
    assert "To" not in got.message and b"hidden" not in got.content


async def test_given_sender_is_the_from_and_the_provider_stays_envelope_sender(
    start_smtp: StartServer,
) -> None:
    server = await start_smtp()

    await EmailSender(settings_for(server)).send(
        ["to@example.org"], "s", "b", sender="test@domain.example"
    )

    [got] = server.handler.delivered
    assert got.mail_from == FROM  # bounces reach the provider's own address
    assert got.message["From"] == "test@domain.example"
    assert got.message["Sender"] == FROM


async def test_sender_alone_is_enough_without_a_provider_address(start_smtp: StartServer) -> None:
    server = await start_smtp()
    sender = EmailSender(settings_for(server, from_address=None))

    await sender.send(["to@example.org"], "s", "b", sender="app@domain.example")

    [got] = server.handler.delivered
    assert got.mail_from == "app@domain.example"
    assert "Sender" not in got.message


async def test_attachments_are_read_and_attached(start_smtp: StartServer, tmp_path: Path) -> None:
    server = await start_smtp()
    (tmp_path / "receipt.txt").write_bytes(b"Total: 12.50\n")
    (tmp_path / "rec.wav").write_bytes(b"RIFF\x00\x01\x02")

    await EmailSender(settings_for(server)).send(
        ["to@example.org"],
        "s",
        "body",
        attachments=[tmp_path / "receipt.txt", tmp_path / "rec.wav"],
    )

    [got] = server.handler.delivered
    parts = list(got.message.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("receipt.txt", "text/plain"),
        ("rec.wav", "audio/x-wav"),
    ]
    assert parts[1].get_content() == b"RIFF\x00\x01\x02"
    body = got.message.get_body(("plain",))
    assert body is not None and body.get_content() == "body\n"


async def test_utf8_address_needs_smtputf8(start_smtp: StartServer) -> None:
    plain, capable = await start_smtp(), await start_smtp(enable_SMTPUTF8=True)

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings_for(plain)).send(["jörg@example.de"], "s", "b")
    assert info.value.reason == (
        "SMTP send failed: An address containing non-ASCII characters was provided, "
        "but SMTPUTF8 is not supported by this server"
    )
    await EmailSender(settings_for(capable)).send(["jörg@example.de"], "s", "b")
    assert capable.handler.delivered[0].rcpt_tos == ["jörg@example.de"]


# ---- authentication and TLS --------------------------------------------------------------


@pytest.fixture
async def auth_server(start_smtp: StartServer) -> SmtpServer:
    """A server whose authenticator records attempts (needs the handler, made inside)."""
    holder: list[Handler] = []

    def authenticator(*args: Any) -> AuthResult:
        return holder[0].authenticator(*args)

    server: SmtpServer = await start_smtp(authenticator=authenticator, auth_require_tls=False)
    holder.append(server.handler)
    return server


async def test_auth_over_a_plain_connection_when_explicitly_allowed(
    auth_server: SmtpServer,
) -> None:
    settings = settings_for(
        auth_server, username="alice", password="s3cret", allow_plaintext_auth=True
    )

    await EmailSender(settings).send(["to@example.org"], "s", "b")

    assert auth_server.handler.auth_attempts[-1] == ("alice", "s3cret")
    assert auth_server.handler.delivered[0].authenticated


async def test_auth_failure_reports_the_smtp_code(auth_server: SmtpServer) -> None:
    settings = settings_for(
        auth_server, username="alice", password="wrong", allow_plaintext_auth=True
    )

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings).send(["to@example.org"], "s", "b")

    assert info.value.code == 535
    assert info.value.reason == (
        "SMTP authentication failed: 535 5.7.8 Authentication credentials invalid"
    )
    assert str(info.value) == f"e-mail not sent: {info.value.reason}"
    assert auth_server.handler.delivered == []


async def test_password_is_never_sent_in_clear_by_default(auth_server: SmtpServer) -> None:
    settings = settings_for(auth_server, username="alice", password="s3cret")

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings).send(["to@example.org"], "s", "b")

    assert info.value.reason == (
        "refusing to send the SMTP password over an unencrypted connection "
        "(the server offers no STARTTLS; set allow_plaintext_auth to permit)"
    )
    assert auth_server.handler.auth_attempts == []


async def test_starttls_always_refuses_a_server_without_it(start_smtp: StartServer) -> None:
    server = await start_smtp()

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings_for(server, starttls="always")).send(["t@example.org"], "s", "b")

    assert info.value.reason == 'the SMTP server does not offer STARTTLS (starttls = "always")'
    assert server.handler.delivered == []


async def test_starttls_auto_upgrades_and_then_authenticates(
    start_smtp: StartServer, server_tls: ssl.SSLContext, certificate: tuple[Path, Path]
) -> None:
    holder: list[Handler] = []
    server = await start_smtp(
        tls_context=server_tls,
        authenticator=lambda *args: holder[0].authenticator(*args),
        auth_required=True,
    )
    holder.append(server.handler)
    settings = settings_for(server, username="alice", password="s3cret", ca_file=certificate[0])

    await EmailSender(settings).send(["to@example.org"], "s", "b")

    [got] = server.handler.delivered
    assert got.tls and got.authenticated


async def test_starttls_never_stays_plain(
    start_smtp: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = await start_smtp(tls_context=server_tls)

    await EmailSender(settings_for(server, starttls="never")).send(["t@example.org"], "s", "b")

    assert not server.handler.delivered[0].tls


async def test_untrusted_certificate_is_refused(
    start_smtp: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = await start_smtp(tls_context=server_tls)

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings_for(server)).send(["t@example.org"], "s", "b")

    assert info.value.reason.startswith(
        "TLS with the SMTP server failed: CERTIFICATE_VERIFY_FAILED"
    )
    assert server.handler.delivered == []


async def test_implicit_tls(
    start_smtp: StartServer, server_tls: ssl.SSLContext, certificate: tuple[Path, Path]
) -> None:
    server = await start_smtp(server_ssl=server_tls)

    await EmailSender(settings_for(server, use_tls=True, ca_file=certificate[0])).send(
        ["t@example.org"], "s", "b"
    )

    assert len(server.handler.delivered) == 1


async def test_validate_certs_off_accepts_a_self_signed_server(
    start_smtp: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = await start_smtp(server_ssl=server_tls)

    await EmailSender(settings_for(server, use_tls=True, validate_certs=False)).send(
        ["t@example.org"], "s", "b"
    )

    assert len(server.handler.delivered) == 1


# ---- server-side failures ----------------------------------------------------------------


async def test_connection_refused() -> None:
    settings = EmailSettings("127.0.0.1", free_port(), from_address=FROM, local_hostname="p.test")

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings).send(["t@example.org"], "s", "b")

    assert info.value.reason == "cannot connect to the SMTP server: connection refused"
    assert info.value.code is None


async def test_recipient_refused_carries_the_code(start_smtp: StartServer) -> None:
    server = await start_smtp()
    server.handler.refuse["nobody@example.org"] = "550 5.1.1 No such user"

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings_for(server)).send(["nobody@example.org"], "s", "b")

    assert info.value.code == 550
    assert info.value.reason == (
        "the SMTP server refused the recipient(s) 'nobody@example.org': 550 5.1.1 No such user"
    )
    assert server.handler.delivered == []


async def test_partly_refused_recipients_are_logged_and_the_rest_delivered(
    start_smtp: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_smtp()
    server.handler.refuse["gone@example.org"] = "550 5.1.1 No such user"

    with caplog.at_level(logging.WARNING, logger="pypbx.messaging.email"):
        email_id = await EmailSender(settings_for(server)).send(
            ["ok@example.org", "gone@example.org"], "s", "b"
        )

    assert server.handler.delivered[0].rcpt_tos == ["ok@example.org"]
    assert f"e-mail {email_id}: recipient gone@example.org refused: 550 5.1.1 No such user" in (
        caplog.messages
    )


async def test_silent_server_times_out() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)  # accepts, never greets
    port = server.sockets[0].getsockname()[1]
    settings = EmailSettings("127.0.0.1", port, from_address=FROM, timeout=0.3)
    started = loop.time()
    try:
        with pytest.raises(EmailSendError) as info:
            await EmailSender(settings).send(["t@example.org"], "s", "b")
    finally:
        server.close()

    assert info.value.reason == "no answer from the SMTP server within 0.3 s"
    assert loop.time() - started < 2.0


async def test_slow_data_hits_the_transaction_timeout(start_smtp: StartServer) -> None:
    server = await start_smtp()
    server.handler.data_delay = 2.0

    with pytest.raises(EmailSendError) as info:
        await EmailSender(settings_for(server, timeout=0.5)).send(["t@example.org"], "s", "b")

    assert info.value.reason == "no answer from the SMTP server within 0.5 s"


# ---- refused before anything is sent -----------------------------------------------------

INJECTIONS = [
    ("to", "victim@example.org\r\nBcc: spy@evil.example", "contains a control character"),
    ("cc", "victim@example.org\nX-Evil: 1", "contains a control character"),
    ("bcc", "a@example.org\r", "contains a control character"),
    ("sender", "me@example.org\r\nBcc: spy@evil.example", "contains a control character"),
]


@pytest.mark.parametrize(("field", "value", "why"), INJECTIONS)
async def test_header_injection_in_addresses_is_refused(
    start_smtp: StartServer, field: str, value: str, why: str
) -> None:
    server = await start_smtp()
    kwargs: dict[str, Any] = {"to": ["ok@example.org"]}
    kwargs[field] = value if field == "sender" else [value]
    to = kwargs.pop("to")

    with pytest.raises(InvalidEmailError) as info:
        await EmailSender(settings_for(server)).send(to, "s", "b", **kwargs)

    assert info.value.field == field
    assert str(info.value) == f"{field} address {value!r} {why}"
    assert server.connections == 0


@pytest.mark.parametrize(
    "subject", ["a\r\nBcc: spy@evil.example", "a\nb", "a\rb", "a\x00", "a\u2028b"]
)
async def test_header_injection_in_subject_is_refused(
    start_smtp: StartServer, subject: str
) -> None:
    server = await start_smtp()

    with pytest.raises(InvalidEmailError) as info:
        await EmailSender(settings_for(server)).send(["t@example.org"], subject, "b")

    assert (info.value.field, str(info.value)) == (
        "subject",
        "subject must not contain line breaks (CR, LF) or NUL",
    )
    assert server.connections == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "to address is empty"),
        ("nope", "to address 'nope' is not an e-mail address"),
        ("@example.org", "to address '@example.org' is not an e-mail address"),
        ("a b@example.org", "to address 'a b@example.org' is not an e-mail address"),
        ("a@b.example, c@d.example", "to must be a single address, got 'a@b.example, c@d.example'"),
    ],
)  # fmt: skip
def test_malformed_addresses(value: str, message: str) -> None:
    sender = EmailSender(EmailSettings("127.0.0.1", from_address=FROM))

    with pytest.raises(InvalidEmailError) as info:
        sender.compose([value], "s", "b")

    assert str(info.value) == message


def test_no_recipient_at_all() -> None:
    sender = EmailSender(EmailSettings("127.0.0.1", from_address=FROM))
    with pytest.raises(InvalidEmailError, match=r"^at least one recipient is required$"):
        sender.compose([], "s", "b")


def test_body_over_the_limit() -> None:
    sender = EmailSender(EmailSettings("127.0.0.1", from_address=FROM, max_body_bytes=10))
    sender.compose(["t@example.org"], "s", "ü" * 5)  # 10 bytes: at the limit

    with pytest.raises(InvalidEmailError) as info:
        sender.compose(["t@example.org"], "s", "ü" * 5 + "x")

    assert (info.value.field, str(info.value)) == (
        "body",
        "body is 11 bytes, more than the limit of 10",
    )


def test_no_sender_address_anywhere() -> None:
    sender = EmailSender(EmailSettings("127.0.0.1"))
    with pytest.raises(EmailNotConfiguredError) as info:
        sender.compose(["t@example.org"], "s", "b")
    assert str(info.value) == (
        "no sender address: none was given and [email] from_address is not set"
    )


async def test_attachments_over_the_limit(tmp_path: Path) -> None:
    sender = EmailSender(EmailSettings("127.0.0.1", from_address=FROM, max_attachment_bytes=8))
    (tmp_path / "a").write_bytes(b"12345")
    (tmp_path / "b").write_bytes(b"6789")

    with pytest.raises(InvalidEmailError) as info:
        await sender.prepare(
            ["t@example.org"], "s", "b", attachments=[tmp_path / "a", tmp_path / "b"]
        )

    assert str(info.value) == "attachments exceed the limit of 8 bytes"
    with pytest.raises(InvalidEmailError, match=r"^cannot read .*/missing: No such file"):
        await sender.prepare(["t@example.org"], "s", "b", attachments=[tmp_path / "missing"])


# ---- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": ""}, "email host '' is not a host name"),
        ({"host": "smtp\r\nx"}, "email host 'smtp\\r\\nx' is not a host name"),
        ({"port": 0}, "email port 0 is not between 1 and 65535"),
        ({"port": 65536}, "email port 65536 is not between 1 and 65535"),
        ({"starttls": "sometimes"}, "email starttls 'sometimes' is not one of auto, always, never"),
        (
            {"use_tls": True, "starttls": "always"},
            'email use_tls (implicit TLS) and starttls = "always" exclude each other',
        ),
        ({"password": "x"}, "email password is set but username is not"),
        ({"username": "x"}, "email username is set but password is not"),
        ({"from_address": "pbx"}, "from_address address 'pbx' is not an e-mail address"),
        ({"timeout": 0}, "email timeout 0 must be positive"),
        ({"max_body_bytes": -1}, "email size limits must not be negative"),
        ({"local_hostname": "a\nb"}, "email local_hostname 'a\\nb' is not a host name"),
    ],
)  # fmt: skip
def test_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"host": "smtp.example.org", **kwargs}
    with pytest.raises(ValueError) as info:
        EmailSettings(**arguments)
    assert str(info.value) == message


def test_settings_repr_hides_the_password() -> None:
    settings = EmailSettings("smtp.example.org", username="alice", password="s3cret")
    assert "s3cret" not in repr(settings)
    assert settings.port == 25 and settings.starttls == "auto" and settings.timeout == 30.0


def test_from_address_may_carry_a_display_name() -> None:
    sender = EmailSender(EmailSettings("127.0.0.1", from_address="Our PBX <pbx@example.com>"))
    outgoing = sender.compose(["t@example.org"], "s", "b")
    assert outgoing.envelope_from == "pbx@example.com"
    assert outgoing.message["From"] == "Our PBX <pbx@example.com>"
    assert outgoing.recipients == ("t@example.org",)
