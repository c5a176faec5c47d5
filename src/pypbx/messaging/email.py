"""Outgoing e-mail over SMTP: the e-mail provider behind SendEmail (spec 8.15).

Sending is split in two steps, `prepare` (validate and build the message) and `deliver`
(the SMTP transaction), so the HTTP API can report a bad parameter (302) before it checks
the API extension (401) and before anything leaves the PBX (spec 4.2). `send` does both.

Every value that ends up in a header is checked for line breaks here, not only by the
callers: a CR/LF smuggled into an address or subject would let an API user add headers
(or recipients) of their own. Failures of the SMTP server are reported as one exception
type with a short reason that names the cause (refused, auth failed, SMTP code), because
"sending failed" is useless to someone debugging a relay configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import re
import ssl
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses
from pathlib import Path
from typing import Literal, TypeVar

import aiosmtplib

logger = logging.getLogger(__name__)

T = TypeVar("T")

StartTls = Literal["auto", "always", "never"]
STARTTLS_MODES: tuple[str, ...] = ("auto", "always", "never")
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_ATTACHMENT_BYTES = 10_000_000

# Everything `str.splitlines` breaks on, plus NUL: the email package folds headers by lines,
# so any of these in a header value could start a header of the sender's choosing.
_LINE_BREAKS = re.compile("[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
# Characters that cannot appear in an unquoted mailbox on an SMTP command line.
_UNSAFE_ADDR_SPEC = re.compile(r'[\s<>"]')
# Bodies are encoded 7-bit clean (quoted-printable or base64 as the content needs), so the
# message needs no 8BITMIME and survives any relay unchanged.
_COMPOSE_POLICY = SMTP_POLICY.clone(cte_type="7bit")


class EmailError(Exception):
    """Base of the errors that mean "the e-mail was not sent"."""


class InvalidEmailError(ValueError):
    """A value given for the message is unusable; nothing was sent.

    `field` names the argument (`to`, `cc`, `bcc`, `sender`, `subject`, `body`,
    `attachments`) so the HTTP API can name the parameter in its 302.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class EmailNotConfiguredError(EmailError):
    """No e-mail provider is usable (for example: no sender address anywhere)."""


class EmailSendError(EmailError):
    """The SMTP server could not be reached or refused the message.

    `reason` is short and names no host, so it can be shown to API clients; the sender
    logs the host and port itself. `code` is the SMTP reply code when the server gave one.
    """

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(f"e-mail not sent: {reason}")
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """The SMTP provider (`[email]` in the TOML file).

    `starttls`: "auto" upgrades when the server offers STARTTLS, "always" refuses to send
    over a server that does not, "never" stays in plain text. `use_tls` is implicit TLS
    from the first byte (usually port 465) and excludes "always". A password is never sent
    over an unencrypted connection unless `allow_plaintext_auth` says so.
    """

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: StartTls = "auto"
    use_tls: bool = False
    from_address: str | None = None  # the provider's "Default sender address"
    timeout: float = 30.0  # for the whole SMTP transaction
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES  # all attachments together
    attachment_dirs: tuple[Path, ...] = ()  # where API clients may attach files from
    local_hostname: str | None = None  # EHLO name; None: the host's FQDN
    validate_certs: bool = True
    ca_file: Path | None = None  # extra trust anchor, e.g. for an internal relay
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if not self.host or _CONTROL.search(self.host) or any(c.isspace() for c in self.host):
            raise ValueError(f"email host {self.host!r} is not a host name")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"email port {self.port} is not between 1 and 65535")
        if self.starttls not in STARTTLS_MODES:
            raise ValueError(f"email starttls {self.starttls!r} is not one of auto, always, never")
        if self.use_tls and self.starttls == "always":
            raise ValueError(
                'email use_tls (implicit TLS) and starttls = "always" exclude each other'
            )
        if self.password is not None and self.username is None:
            raise ValueError("email password is set but username is not")
        if self.username is not None and self.password is None:
            raise ValueError("email username is set but password is not")
        if self.local_hostname is not None and (
            not self.local_hostname
            or _CONTROL.search(self.local_hostname)
            or " " in self.local_hostname
        ):
            raise ValueError(f"email local_hostname {self.local_hostname!r} is not a host name")
        if self.from_address is not None:
            parse_mailbox(self.from_address, "from_address")
        if not self.timeout > 0:
            raise ValueError(f"email timeout {self.timeout} must be positive")
        if self.max_body_bytes < 0 or self.max_attachment_bytes < 0:
            raise ValueError("email size limits must not be negative")


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A checked message and its SMTP envelope, ready for `EmailSender.deliver`."""

    email_id: str  # a lowercase GUID: the API's EmailId and the Message-ID's left part
    message: EmailMessage
    envelope_from: str
    recipients: tuple[str, ...]  # To, Cc and Bcc, in that order


def parse_mailbox(value: str, field: str) -> Address:
    """One mailbox (`user@example.com` or `Name <user@example.com>`) for header `field`."""
    if not value.strip():
        raise InvalidEmailError(field, f"{field} address is empty")
    if _CONTROL.search(value):
        raise InvalidEmailError(field, f"{field} address {value!r} contains a control character")
    parsed = getaddresses([value])
    if len(parsed) != 1:
        raise InvalidEmailError(field, f"{field} must be a single address, got {value!r}")
    name, addr_spec = parsed[0]
    local, at, domain = addr_spec.rpartition("@")
    if not at or not local or not domain or _UNSAFE_ADDR_SPEC.search(addr_spec):
        raise InvalidEmailError(field, f"{field} address {value!r} is not an e-mail address")
    # Built from the parts: parsing addr_spec again would refuse a UTF-8 local part, which
    # SMTPUTF8 servers accept (and the sender reports when the server does not).
    return Address(display_name=name, username=local, domain=domain)


def check_subject(subject: str) -> str:
    """The subject, unless it could break out of its header line."""
    if _LINE_BREAKS.search(subject):
        raise InvalidEmailError("subject", "subject must not contain line breaks (CR, LF) or NUL")
    return subject


def read_attachments(paths: Sequence[Path], max_total_bytes: int) -> list[Attachment]:
    """Blocking file reads (call it in a worker thread); the total size is capped."""
    attachments: list[Attachment] = []
    total = 0
    for path in paths:
        try:
            with path.open("rb") as file:
                content = file.read(max_total_bytes - total + 1)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise InvalidEmailError("attachments", f"cannot read {path}: {reason}") from exc
        total += len(content)
        if total > max_total_bytes:
            raise InvalidEmailError(
                "attachments", f"attachments exceed the limit of {max_total_bytes} bytes"
            )
        guessed, encoding = mimetypes.guess_type(path.name)
        content_type = guessed if guessed and not encoding else "application/octet-stream"
        attachments.append(Attachment(path.name, content, content_type))
    return attachments


def _ascii_domain(address: Address) -> str:
    """A domain for the Message-ID, which must be ASCII."""
    try:
        return address.domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "pypbx.invalid"


class EmailSender:
    """Sends mail through one SMTP server; one connection per message.

    A fresh connection per message keeps the sender stateless (nothing to reconnect,
    nothing shared between concurrent sends); API-driven e-mail is rare enough that
    connection reuse would buy nothing. Build one per configuration, at startup: the
    constructor loads the CA store (tens of milliseconds of file I/O).
    """

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._default_from = (
            parse_mailbox(settings.from_address, "from_address") if settings.from_address else None
        )
        self._tls_context = self._make_tls_context(settings)

    @staticmethod
    def _make_tls_context(settings: EmailSettings) -> ssl.SSLContext:
        cafile = str(settings.ca_file) if settings.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        if not settings.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def compose(
        self,
        to: Sequence[str],
        subject: str,
        body: str,
        *,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        sender: str | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> OutgoingEmail:
        """Check everything and build the message; no I/O. Raises InvalidEmailError."""
        to_addrs = [parse_mailbox(value, "to") for value in to]
        cc_addrs = [parse_mailbox(value, "cc") for value in cc]
        bcc_addrs = [parse_mailbox(value, "bcc") for value in bcc]
        if not (to_addrs or cc_addrs or bcc_addrs):
            raise InvalidEmailError("to", "at least one recipient is required")
        author = parse_mailbox(sender, "sender") if sender is not None else self._default_from
        if author is None:
            raise EmailNotConfiguredError(
                "no sender address: none was given and [email] from_address is not set"
            )
        check_subject(subject)
        try:
            body_size = len(body.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidEmailError("body", "body is not valid Unicode text") from exc
        if body_size > self.settings.max_body_bytes:
            raise InvalidEmailError(
                "body",
                f"body is {body_size} bytes, more than the limit of {self.settings.max_body_bytes}",
            )
        # Bounces go to the configured provider address, which the relay knows, even when
        # the API asked for another From; RFC 5322 then names the real sender in `Sender`.
        envelope = self._default_from or author
        email_id = str(uuid.uuid4())
        message = EmailMessage(policy=_COMPOSE_POLICY)
        message["From"] = author
        if envelope.addr_spec != author.addr_spec:
            message["Sender"] = envelope
        if to_addrs:
            message["To"] = to_addrs
        if cc_addrs:
            message["Cc"] = cc_addrs
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC).astimezone())
        message["Message-ID"] = f"<{email_id}@{_ascii_domain(envelope)}>"
        message.set_content(body, charset="utf-8")
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        recipients = tuple(a.addr_spec for a in (*to_addrs, *cc_addrs, *bcc_addrs))
        return OutgoingEmail(email_id, message, envelope.addr_spec, recipients)

    async def prepare(
        self,
        to: Sequence[str],
        subject: str,
        body: str,
        *,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        sender: str | None = None,
        attachments: Sequence[Path] = (),
    ) -> OutgoingEmail:
        """`compose` with attachments read from files, in a worker thread (file reads and
        base64 encoding of megabytes would stall calls on the event loop)."""

        def build() -> OutgoingEmail:
            files = read_attachments(attachments, self.settings.max_attachment_bytes)
            return self.compose(to, subject, body, cc=cc, bcc=bcc, sender=sender, attachments=files)

        return await asyncio.to_thread(build)

    async def send(
        self,
        to: Sequence[str],
        subject: str,
        body: str,
        *,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        sender: str | None = None,
        attachments: Sequence[Path] = (),
    ) -> str:
        """Send one message; returns its id (a GUID, also the Message-ID's left part)."""
        outgoing = await self.prepare(
            to, subject, body, cc=cc, bcc=bcc, sender=sender, attachments=attachments
        )
        return await self.deliver(outgoing)

    async def deliver(self, outgoing: OutgoingEmail) -> str:
        """Run the SMTP transaction; returns `outgoing.email_id` once the server took it."""
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        try:
            async with asyncio.timeout(settings.timeout):
                await self._transact(outgoing)
        except EmailSendError as exc:
            logger.warning("e-mail %s via %s failed: %s", outgoing.email_id, where, exc.reason)
            raise
        except TimeoutError as exc:
            reason = f"no answer from the SMTP server within {settings.timeout:g} s"
            logger.warning("e-mail %s via %s failed: %s", outgoing.email_id, where, reason)
            raise EmailSendError(reason) from exc
        logger.info(
            "e-mail %s sent via %s to %d recipient(s)",
            outgoing.email_id,
            where,
            len(outgoing.recipients),
        )
        return outgoing.email_id

    async def _transact(self, outgoing: OutgoingEmail) -> None:
        settings = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.use_tls,
            start_tls=False,  # decided in _secure, to report a missing STARTTLS clearly
            timeout=settings.timeout,
            tls_context=self._tls_context,
            local_hostname=settings.local_hostname,
        )
        try:
            await _step("connect", smtp.connect())
            encrypted = await self._secure(smtp)
            if settings.username is not None:
                if not encrypted and not settings.allow_plaintext_auth:
                    raise EmailSendError(
                        "refusing to send the SMTP password over an unencrypted connection "
                        "(the server offers no STARTTLS; set allow_plaintext_auth to permit)"
                    )
                await _step("login", smtp.login(settings.username, settings.password or ""))
            errors, _ = await _step(
                "send",
                smtp.send_message(
                    outgoing.message,
                    sender=outgoing.envelope_from,
                    recipients=list(outgoing.recipients),
                ),
            )
            for recipient, response in errors.items():
                # The others got the message: failing now would invite a duplicate resend.
                logger.warning(
                    "e-mail %s: recipient %s refused: %d %s",
                    outgoing.email_id,
                    recipient,
                    response.code,
                    response.message,
                )
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
        finally:
            smtp.close()

    async def _secure(self, smtp: aiosmtplib.SMTP) -> bool:
        """Upgrade with STARTTLS as configured; True when the connection is encrypted."""
        if self.settings.use_tls:
            return True
        if self.settings.starttls == "never":
            return False
        await _step("connect", smtp.ehlo())
        if not smtp.supports_extension("starttls"):
            if self.settings.starttls == "always":
                raise EmailSendError(
                    'the SMTP server does not offer STARTTLS (starttls = "always")'
                )
            return False
        await _step("starttls", smtp.starttls())
        return True


async def _step(step: str, action: Awaitable[T]) -> T:
    """Await one SMTP step, turning library errors into EmailSendError with a clear reason."""
    try:
        return await action
    except TimeoutError:
        raise
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
        detail = "; ".join(f"{r.recipient!r}: {r.code} {r.message}" for r in refused)
        raise EmailSendError(
            f"the SMTP server refused the recipient(s) {detail}",
            code=refused[0].code if refused else None,
        ) from exc
    except aiosmtplib.SMTPSenderRefused as exc:
        raise EmailSendError(
            f"the SMTP server refused the sender {exc.sender!r}: {exc.code} {exc.message}",
            code=exc.code,
        ) from exc
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise EmailSendError(
            f"SMTP authentication failed: {exc.code} {exc.message}", code=exc.code
        ) from exc
    except aiosmtplib.SMTPDataError as exc:
        raise EmailSendError(
            f"the SMTP server refused the message: {exc.code} {exc.message}", code=exc.code
        ) from exc
    except aiosmtplib.SMTPConnectError as exc:
        raise EmailSendError(f"cannot connect to the SMTP server: {_cause(exc)}") from exc
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise EmailSendError(f"the SMTP server closed the connection during {step}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise EmailSendError(
            f"SMTP {step} failed: {exc.code} {exc.message}", code=exc.code
        ) from exc
    except aiosmtplib.SMTPException as exc:
        raise EmailSendError(f"SMTP {step} failed: {exc.message}") from exc
    except ssl.SSLError as exc:
        raise EmailSendError(f"TLS with the SMTP server failed: {exc.reason or exc}") from exc
    except OSError as exc:
        raise EmailSendError(f"SMTP {step} failed: {exc.strerror or exc}") from exc


def _cause(exc: aiosmtplib.SMTPConnectError) -> str:
    """The socket-level reason behind a connect error, in words an operator recognises."""
    cause = exc.__cause__
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {cause.reason or cause}"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return f"{exc.code} {exc.message}"
    return exc.message
