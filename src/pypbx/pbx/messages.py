"""Text messages for extensions: SIP MESSAGE between phones (RFC 3428) and the HTTP/OzML
`SendSms` (spec http-api 8.14, notifications-ozml 4.8, 4.9, 6.16).

pypbx relays messages store-and-forward rather than as a proxy: a phone's MESSAGE is answered
202 once it is safely in the store, and pypbx then sends a MESSAGE of its own to every phone
registered for the recipient. Storing first is what lets a message wait for a phone that is
offline or failing (408, 480, 486, 5xx, no answer) until it next registers, and what gives every
message an SmsId whose final state (delivered, expired, failed) is kept and reported.

Messages for one extension go out oldest first, one at a time, from one worker task per
extension; a temporary failure ends the round, so a later message never overtakes an earlier
one. A message for an API extension becomes an IncomingSMS notification instead. Replies to
IncomingSMS and SMSDeliveryReport may carry call-less OzML (SendSms, SendEmail, Call, ...).

SendSms to a number that is no extension goes out through the SMPP gateway when one is
configured. Such a message is stored first like any other (recipient `SMPP_RECIPIENT`, which no
extension id can be), so its SmsId exists at once and a restart or an SMSC outage loses
nothing: until the SMSC accepted it, it is submitted again at every start. The SMSC's message id
is kept with it because delivery receipts name only that. SMS from the outside world become
IncomingSMS for the API extension with that number, or for the configured catch-all one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote

from pypbx.messaging.smpp import (
    SmppClosedError,
    SmppGateway,
    SmppQueueFullError,
    SmppRejectedError,
)
from pypbx.messaging.sms_text import SmsTooLongError
from pypbx.net.stack import SipStack
from pypbx.notify import NotificationReply, Notifier
from pypbx.ozml import CallActions, Interpreter, OzmlError, Session, parse_ozml
from pypbx.pbx.auth import SipAuthenticator
from pypbx.pbx.control import ApiExtensionError
from pypbx.pbx.registrar import Binding, Registrar
from pypbx.pbx.replies import reply
from pypbx.pbx.sdp_helpers import sip_uri
from pypbx.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    SipURI,
    generate_call_id,
    generate_tag,
)
from pypbx.sip.transaction import RequestReceived
from pypbx.store.records import ExtensionRecord, MessageRecord, api_extension_settings, utcnow
from pypbx.store.store import Store

__all__ = [
    "SMPP_RECIPIENT",
    "MessageRouter",
    "MessageSettings",
    "MessageTooLargeError",
    "SmsDestinationNotFoundError",
    "message_text",
]

log = logging.getLogger(__name__)

TEXT_PLAIN = "text/plain;charset=UTF-8"
# Failures a later attempt may cure (the phone is busy, away or overloaded): the message stays
# pending for the next REGISTER. Every 5xx counts too; anything else fails the message for good.
_TEMPORARY = frozenset({408, 480, 486})
_BATCH = 50
_USER_SAFE = "+-_.!~*'()&=$,;?/"  # RFC 3261 user part characters besides alphanumerics
# The recipient of messages for the SMSC: '@' cannot be in an extension id.
SMPP_RECIPIENT = "@smpp"
_RESUBMIT_LIMIT = 10_000  # unsent SMPP messages taken up again at one start
_EARLY_RECEIPTS = 1000  # receipts kept for a message whose SMSC id is not yet stored
_RECEIPT_STATUS = {"delivered": "Delivered", "expired": "Failed", "failed": "Failed"}


class SmsDestinationNotFoundError(LookupError):
    """The recipient is no extension that takes messages (API code 501)."""


class MessageTooLargeError(ValueError):
    """The encoded text is larger than `MessageSettings.max_bytes` (API code 302, Message)."""


@dataclass(frozen=True, slots=True)
class MessageSettings:
    """Tunables of message delivery (the `[messages]` configuration section)."""

    expiry: float = 7 * 86400.0  # how long a message waits for its recipient's phones
    # Larger bodies are refused (413): a delivered MESSAGE must fit one UDP datagram.
    max_bytes: int = 60 * 1024
    retention: float = 30 * 86400.0  # final states stay answerable this long, then are purged
    sweep_interval: float = 60.0  # how often expiry and purge run
    attempt_timeout: float = 40.0  # safety net over the transaction's own 32 s timeout

    def __post_init__(self) -> None:
        for name in ("expiry", "retention", "sweep_interval", "attempt_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes!r}")


@dataclass(frozen=True, slots=True)
class _Attempt:
    """How one delivery to one phone ended (status 0: it could not be sent at all)."""

    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def temporary(self) -> bool:
        return self.status in _TEMPORARY or 500 <= self.status < 600

    def __str__(self) -> str:
        return f"{self.status} {self.reason}" if self.status else self.reason


class MessageRouter:
    """Accepts, stores, delivers and reports text messages for extensions."""

    def __init__(
        self,
        stack: SipStack,
        store: Store,
        registrar: Registrar,
        authenticator: SipAuthenticator,
        notifier: Notifier | None,
        settings: MessageSettings | None = None,
        *,
        actions: Callable[[], CallActions] | None = None,
        gateway: SmppGateway | None = None,
        incoming_api_extension: str | None = None,
    ) -> None:
        self.stack = stack
        self.store = store
        self.registrar = registrar
        self.auth = authenticator
        self.notifier = notifier
        self.settings = settings or MessageSettings()
        self._actions = actions  # runs OzML replies; None: replies are not executed
        self._again: set[str] = set()  # extensions whose pending messages must be looked at
        # Extensions that may have messages waiting (every wake() adds one, a round that
        # finds none left removes it): a REGISTER of any other costs no store query.
        self._maybe_pending: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self.gateway: SmppGateway | None = None
        self.incoming_api_extension: str | None = None
        # SMSC ids whose receipt came before `_submit` stored the id (the SMSC can be quick)
        self._early: dict[str, str] = {}
        if gateway is not None:
            self.attach_gateway(gateway, incoming_api_extension)

    def attach_gateway(
        self, gateway: SmppGateway, incoming_api_extension: str | None = None
    ) -> None:
        """Send SMS to outside numbers through `gateway` and take its receipts and incoming
        SMS (its callbacks are replaced); `incoming_api_extension` gets incoming SMS for
        numbers that are no API extension with an SMS URL."""
        self.gateway = gateway
        self.incoming_api_extension = incoming_api_extension or None
        gateway.on_receipt = self._on_receipt
        gateway.on_incoming = self._on_incoming

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the expiry sweep, deliver what waited across a restart to phones whose
        registrations survived it, and submit SMS the SMSC never accepted (start the gateway
        first)."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())
        for extension_id in await self.store.pending_recipients():
            self._maybe_pending.add(extension_id)  # delivered when its phone registers
            if self.registrar.bindings(extension_id):
                self.wake(extension_id)
        if self.gateway is not None:
            waiting = await self.store.pending_messages(
                SMPP_RECIPIENT, utcnow(), limit=_RESUBMIT_LIMIT
            )
            unsent = [record for record in waiting if record.remote_id is None]
            if unsent:
                log.info("submitting %d SMS again that the SMSC never accepted", len(unsent))
            for record in unsent:
                self._spawn(self._submit(record))

    async def close(self) -> None:
        """Stop delivering; what is still pending stays in the store for the next start."""
        self._closed = True
        tasks = [*self._workers.values(), *self._tasks]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ----------------------------------------------------------------- SIP MESSAGE in
    async def on_message(self, event: RequestReceived) -> None:
        """A MESSAGE outside any dialog: authenticate, store, answer 202, deliver."""
        request = event.request
        refusal = self._refusal(request)
        if refusal is not None:
            self.stack.send_response(refusal)
            return
        result = await self.auth.authenticate(request, proxy=True)
        if result.response is not None:
            self.stack.send_response(result.response)
            return
        sender = result.extension
        assert sender is not None
        dialed = unquote(request.uri.user or "")
        target = await self._recipient(dialed)
        if target is None:
            self.stack.send_response(reply(request, 404, "Not Found"))
            return
        record = self._new_record(
            sender=sender.id,
            sender_name=request.from_addr.display_name or "",
            target=target,
            dialed=dialed,
            content_type=request.headers.get("Content-Type") or "",
            body=request.body,
        )
        if target.type == "API":
            await self._to_api_extension(request, record, target)
            return
        await self.store.add_message(record)
        self.stack.send_response(reply(request, 202, "Accepted"))
        log.info("message %s: %s -> %s accepted", record.id, record.sender, record.recipient)
        self.wake(target.id)

    def _refusal(self, request: Request) -> Response | None:
        """The answer to a MESSAGE refused before authentication, or None."""
        try:
            hops = request.max_forwards
        except SipParseError:
            return reply(request, 400, "Bad Max-Forwards")
        if hops is not None and hops <= 0:
            return reply(request, 483, "Too Many Hops")
        required = request.headers.get("Require")
        if required:
            response = reply(request, 420, "Bad Extension")
            response.headers.add("Unsupported", required)
            return response
        if len(request.body) > self.settings.max_bytes:
            return reply(request, 413, "Request Entity Too Large")
        if request.body and not request.headers.get("Content-Type"):
            return reply(request, 400, "Missing Content-Type")
        return None

    async def _to_api_extension(
        self, request: Request, record: MessageRecord, target: ExtensionRecord
    ) -> None:
        url = self._sms_url(target)
        if url is None:
            log.info("message for API extension %s refused: no incoming SMS URL", target.id)
            self.stack.send_response(reply(request, 480, "Temporarily Unavailable"))
            return
        text = message_text(record.content_type, record.body)
        if text is None:
            response = reply(request, 415, "Unsupported Media Type")
            response.headers.add("Accept", "text/plain")
            self.stack.send_response(response)
            return
        await self.store.add_message(record)
        self.stack.send_response(reply(request, 202, "Accepted"))
        self._notify_incoming(record, url, text)

    # ----------------------------------------------------------------- SendSms
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
        """Send `message` from an API extension to an extension; returns the SmsId as soon as
        the message is stored (spec 8.14), delivery follows.

        Raises ApiExtensionError (401) for an unknown, disabled or not permitted API extension,
        MessageTooLargeError (302) and SmsDestinationNotFoundError (501) when `recipient`
        (`2000` or `2000@anything`) is no SIP extension nor an API extension with an SMS URL.
        """
        origin = await self.store.get_extension(api_extension)
        if origin is None or origin.type != "API" or not origin.enabled:
            raise ApiExtensionError(api_extension)
        if username is not None and not api_extension_settings(origin).allows(username):
            raise ApiExtensionError(api_extension)
        body = message.encode("utf-8")
        if len(body) > self.settings.max_bytes:
            raise MessageTooLargeError(f"message larger than {self.settings.max_bytes} bytes")
        number = recipient.partition("@")[0]
        target = await self._recipient(number)
        outside = target is None and self.gateway is not None and bool(number)
        if outside and await self.store.get_extension(number) is None:
            # no extension at all (a disabled one still refuses): an outside number
            return await self._send_out(api_extension, sender, recipient, body, delivery_report_url)
        url = self._sms_url(target) if target is not None and target.type == "API" else None
        if target is None or (target.type == "API" and url is None):
            log.info("SendSms from %s to %r refused: no such destination", api_extension, recipient)
            raise SmsDestinationNotFoundError(recipient)
        record = self._new_record(
            sender=sender or api_extension,
            sender_name="",
            target=target,
            dialed=recipient,
            content_type=TEXT_PLAIN,
            body=body,
            api_extension=api_extension,
            report_url=delivery_report_url or None,
        )
        await self.store.add_message(record)
        log.info("message %s: SendSms %s -> %s accepted", record.id, record.sender, target.id)
        if url is not None:
            self._notify_incoming(record, url, message)
        else:
            self.wake(target.id)
        return record.id

    # ----------------------------------------------------------------- SMPP
    async def _send_out(
        self,
        api_extension: str,
        sender: str | None,
        recipient: str,
        body: bytes,
        delivery_report_url: str | None,
    ) -> str:
        """Store a SendSms for an outside number and submit it in the background."""
        assert self.gateway is not None
        now = utcnow()
        record = MessageRecord(
            id=str(uuid.uuid4()),
            sender=sender or self.gateway.settings.source_addr or api_extension,
            recipient=SMPP_RECIPIENT,
            dialed=recipient,
            content_type=TEXT_PLAIN,
            body=body,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.expiry),
            api_extension=api_extension,
            report_url=delivery_report_url or None,
        )
        await self.store.add_message(record)
        log.info("message %s: SendSms %s -> %s over SMPP", record.id, record.sender, recipient)
        self._spawn(self._submit(record))
        return record.id

    async def _submit(self, record: MessageRecord) -> None:
        """Hand one stored message to the SMSC; keeps its id for the receipt, or fails it
        for good. Stopping (SmppClosedError) leaves it pending for the next start."""
        gateway = self.gateway
        assert gateway is not None
        text = message_text(record.content_type, record.body) or ""
        number = record.dialed.partition("@")[0]
        try:
            remote_id = await gateway.submit(record.sender, number, text)
        except SmppClosedError:
            log.info("message %s: SMPP gateway stopped, kept for the next start", record.id)
            return
        except (SmppRejectedError, SmppQueueFullError, ValueError) as exc:
            # SmsTooLongError is a ValueError too
            reason = "message too long" if isinstance(exc, SmsTooLongError) else str(exc)
            now = utcnow()
            if await self.store.finish_message(record.id, "failed", now, reason):
                log.warning("message %s to %s failed: %s", record.id, record.dialed, reason)
                self._report(record, "Failed", now)
            return
        log.info("message %s: accepted by the SMSC as %s", record.id, remote_id)
        await self.store.set_message_remote_id(record.id, remote_id)
        early = self._early.pop(remote_id, None)
        if early is not None:
            await self._receipt(remote_id, early)

    def _on_receipt(self, remote_id: str, state: str) -> None:
        self._spawn(self._receipt(remote_id, state))

    async def _receipt(self, remote_id: str, state: str) -> None:
        """A delivery receipt: the message's final state, reported once."""
        record = await self.store.message_by_remote_id(remote_id)
        if record is None:
            # the submit's answer may not be stored yet; `_submit` picks this up
            while len(self._early) >= _EARLY_RECEIPTS:
                del self._early[next(iter(self._early))]
            self._early[remote_id] = state
            return
        status = _RECEIPT_STATUS.get(state, "Failed")
        final = state if state in _RECEIPT_STATUS else "failed"
        now = utcnow()
        reason = "" if final == "delivered" else f"SMSC receipt: {state}"
        if await self.store.finish_message(record.id, final, now, reason):
            log.info("message %s to %s %s", record.id, record.dialed, final)
            self._report(record, status, now)

    def _on_incoming(self, sender: str, recipient: str, text: str) -> None:
        self._spawn(self._incoming_sms(sender, recipient, text))

    async def _incoming_sms(self, sender: str, recipient: str, text: str) -> None:
        """An SMS from the SMSC: IncomingSMS to the API extension with that number, else to
        the catch-all API extension, else it is dropped."""
        target: ExtensionRecord | None = None
        url: str | None = None
        for number in dict.fromkeys((recipient, recipient.lstrip("+"))):
            found = await self._recipient(number)
            if found is not None and found.type == "API":
                url = self._sms_url(found)
                if url is not None:
                    target = found
                    break
        if target is None and self.incoming_api_extension is not None:
            found = await self._recipient(self.incoming_api_extension)
            if found is not None and found.type == "API":
                url = self._sms_url(found)
                target = found if url is not None else None
        if target is None or url is None:
            log.warning("SMS from %s to %s dropped: no API extension takes it", sender, recipient)
            return
        record = self._new_record(
            sender=sender,
            sender_name="",
            target=target,
            dialed=recipient,
            content_type=TEXT_PLAIN,
            body=text.encode("utf-8"),
        )
        await self.store.add_message(record)
        log.info("message %s: SMS from %s for API extension %s", record.id, sender, target.id)
        self._notify_incoming(record, url, text)

    # ----------------------------------------------------------------- delivery
    def wake(self, extension_id: str) -> None:
        """Look at the extension's pending messages soon (cheap; repeated wakes coalesce)."""
        if self._closed:
            return
        self._again.add(extension_id)
        self._maybe_pending.add(extension_id)
        if extension_id not in self._workers:
            task = asyncio.get_running_loop().create_task(self._work(extension_id))
            self._workers[extension_id] = task

    async def deliver_pending(self, extension_id: str) -> None:
        """Deliver what waits for the extension; call it after a REGISTER added a binding.
        Returns when the round (and any round asked for meanwhile) is over."""
        self.wake(extension_id)
        worker = self._workers.get(extension_id)
        if worker is not None:
            await asyncio.shield(worker)

    @property
    def waiting(self) -> bool:
        """Messages may wait for some phone to register (after_register has work to do)."""
        return bool(self._maybe_pending)

    async def after_register(self, event: RequestReceived) -> None:
        """Wake delivery for the extension a REGISTER bound, once the registrar answered it
        200 (the To user is the extension's id, username or authorization name)."""
        if not self._maybe_pending:  # nothing waits for anyone: no lookups either
            return
        answered = event.transaction.last_response if event.transaction is not None else None
        if answered is None or answered.status != 200:
            return
        user = unquote(event.request.to_addr.uri.user or "")
        ext = await self.store.get_extension(user) if user else None
        if ext is None and user:
            ext = await self.store.find_extension_by_auth_name(user)
        if ext is not None and ext.id in self._maybe_pending and self.registrar.bindings(ext.id):
            self.wake(ext.id)

    async def _work(self, extension_id: str) -> None:
        try:
            while extension_id in self._again:
                self._again.discard(extension_id)
                try:
                    await self._deliver_round(extension_id)
                except Exception:
                    log.exception("delivering messages for %s failed", extension_id)
        finally:
            # No await between the loop's last check and this: a wake() after it starts a
            # new worker instead of being lost.
            self._workers.pop(extension_id, None)

    async def _deliver_round(self, extension_id: str) -> None:
        while self.registrar.bindings(extension_id):
            batch = await self.store.pending_messages(extension_id, utcnow(), limit=_BATCH)
            for record in batch:
                if not await self._deliver(record):
                    return  # kept for the next REGISTER, and so is everything after it
            if len(batch) < _BATCH:
                if extension_id not in self._again:  # no wake() came during the round
                    self._maybe_pending.discard(extension_id)
                return

    async def _deliver(self, record: MessageRecord) -> bool:
        """Try every phone of the recipient; False if the message must wait."""
        bindings = self.registrar.bindings(record.recipient)
        if not bindings:
            return False
        attempts = await asyncio.gather(*(self._attempt(b, record) for b in bindings))
        now = utcnow()
        if any(attempt.ok for attempt in attempts):
            if await self.store.finish_message(record.id, "delivered", now, ""):
                log.info("message %s delivered to %s", record.id, record.recipient)
                self._report(record, "Delivered", now)
            return True
        temporary = [attempt for attempt in attempts if attempt.temporary]
        reason = str((temporary or attempts)[0])
        if temporary:
            await self.store.note_message_attempt(record.id, reason)
            log.info(
                "message %s for %s not delivered (%s): kept until the next registration",
                record.id,
                record.recipient,
                reason,
            )
            return False
        if await self.store.finish_message(record.id, "failed", now, reason):
            log.warning("message %s for %s failed: %s", record.id, record.recipient, reason)
            self._report(record, "Failed", now)
        return True

    async def _attempt(self, binding: Binding, record: MessageRecord) -> _Attempt:
        try:
            request = self._outgoing(binding, record)
        except SipParseError:
            log.warning("message %s: unusable contact %r", record.id, binding.contact)
            return _Attempt(0, "unusable contact")
        answer: asyncio.Future[_Attempt] = asyncio.get_running_loop().create_future()

        def on_response(response: Response) -> None:
            if response.status >= 200 and not answer.done():
                answer.set_result(_Attempt(response.status, response.reason))

        def on_timeout() -> None:
            if not answer.done():
                answer.set_result(_Attempt(408, "Request Timeout"))

        self.stack.send_request(request, binding.source, binding.transport, on_response, on_timeout)
        try:
            return await asyncio.wait_for(answer, self.settings.attempt_timeout)
        except TimeoutError:
            return _Attempt(408, "Request Timeout")

    def _outgoing(self, binding: Binding, record: MessageRecord) -> Request:
        """pypbx's own MESSAGE to one phone: From the sender's number at pypbx, with the Date
        the message was sent, since a stored one may arrive days later."""
        peer_ip = binding.source[0]
        host = self.stack.local_host(peer_ip)
        target = SipURI.parse(binding.contact)
        from_addr = Address(
            uri=sip_uri(_user_part(record.sender), host),
            display_name=record.sender_name or None,
            params={"tag": generate_tag()},
        )
        to_addr = Address(uri=sip_uri(_user_part(record.recipient), host))
        headers = Headers()
        headers.add("Via", str(self.stack.new_via(peer_ip, binding.transport)))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(from_addr))
        headers.add("To", str(to_addr))
        headers.add("Call-ID", generate_call_id(host))
        headers.add("CSeq", "1 MESSAGE")
        headers.add("Date", format_datetime(record.created_at, usegmt=True))
        if record.content_type:
            headers.add("Content-Type", record.content_type)
        return Request("MESSAGE", target, headers, record.body)

    # ----------------------------------------------------------------- expiry
    async def sweep(self, now: datetime) -> None:
        """Drop messages that waited too long (reported as Failed) and forget final states
        older than the retention."""
        for record in await self.store.expired_messages(now):
            if await self.store.finish_message(record.id, "expired", now):
                log.warning(
                    "message %s from %s for %s expired undelivered after %d attempt(s): dropped",
                    record.id,
                    record.sender,
                    record.recipient,
                    record.attempts,
                )
                self._report(record, "Failed", now)
        purged = await self.store.purge_messages(now - timedelta(seconds=self.settings.retention))
        if purged:
            log.info("purged %d old messages", purged)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep(utcnow())
            except Exception:
                log.exception("message expiry sweep failed")
            await asyncio.sleep(self.settings.sweep_interval)

    # ----------------------------------------------------------------- notifications
    def _notify_incoming(self, record: MessageRecord, url: str, text: str) -> None:
        assert self.notifier is not None  # _sms_url gives no URL without a notifier
        fields = [
            ("ApiExtension", record.recipient),
            ("SmsId", record.id),
            ("Sender", record.sender),
            ("Recipient", record.dialed),
            ("Message", text),
            ("ReceivedTime", _local_time(record.created_at)),
        ]
        self.notifier.post(
            url,
            "IncomingSMS",
            fields,
            key=record.id,
            on_reply=lambda answer: self._spawn(self._incoming_done(record, answer)),
        )

    async def _incoming_done(self, record: MessageRecord, answer: NotificationReply) -> None:
        """The application took the IncomingSMS (delivered) or could not be reached (failed)."""
        now = utcnow()
        state, reason = ("delivered", "") if answer.ok else ("failed", _http_failure(answer))
        if await self.store.finish_message(record.id, state, now, reason):
            log.info("message %s for API extension %s %s", record.id, record.recipient, state)
            self._report(record, "Delivered" if answer.ok else "Failed", now)
        if answer.ok:
            await self._run_reply("IncomingSMS", record.recipient, record.id, answer.body)

    def _report(self, record: MessageRecord, status: str, when: datetime) -> None:
        """SMSDeliveryReport (spec 4.9) to the SendSms DeliveryReportURL, if one was given."""
        if not record.report_url or self.notifier is None:
            return
        fields = [
            ("SmsId", record.id),
            ("Recipient", record.dialed or record.recipient),
            ("Sender", record.sender),
            ("DeliveryStatus", status),
            ("DeliveryTime", _local_time(when)),
            ("ApiExtension", record.api_extension),
        ]

        def replied(answer: NotificationReply) -> None:
            if answer.ok:
                self._spawn(
                    self._run_reply(
                        "SMSDeliveryReport", record.api_extension, record.id, answer.body
                    )
                )

        self.notifier.post(
            record.report_url, "SMSDeliveryReport", fields, key=record.id, on_reply=replied
        )

    async def _run_reply(
        self, notification: str, api_extension: str, sms_id: str, body: str
    ) -> None:
        """Run a call-less OzML reply (spec 4.8: SendSms, SendEmail, Call, Delay, GoTo, ...)."""
        if self._actions is None or self.notifier is None or not body.strip():
            return
        try:
            script = parse_ozml(body)
        except OzmlError as exc:
            log.warning("message %s: %s reply is not OzML: %s", sms_id, notification, exc)
            return
        if not script.verbs:
            return
        session = Session.call_less(notification=notification, api_extension=api_extension or None)
        interpreter = Interpreter(self._actions(), _Fetch(self.notifier, sms_id), session)
        try:
            await interpreter.run(script)
        except Exception:
            log.exception("message %s: %s script failed", sms_id, notification)

    # ----------------------------------------------------------------- helpers
    async def _recipient(self, number: str) -> ExtensionRecord | None:
        """The enabled SIP or API extension `number` names, if any."""
        ext = await self.store.get_extension(number) if number else None
        if ext is None or not ext.enabled or ext.type not in ("SIP", "API"):
            return None
        return ext

    def _sms_url(self, target: ExtensionRecord) -> str | None:
        if self.notifier is None:
            return None
        return api_extension_settings(target).incoming_sms_url

    def _new_record(
        self,
        *,
        sender: str,
        sender_name: str,
        target: ExtensionRecord,
        dialed: str,
        content_type: str,
        body: bytes,
        api_extension: str = "",
        report_url: str | None = None,
    ) -> MessageRecord:
        now = utcnow()
        return MessageRecord(
            id=str(uuid.uuid4()),
            sender=sender,
            sender_name=sender_name,
            recipient=target.id,
            dialed=dialed,
            content_type=content_type,
            body=body,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.expiry),
            api_extension=api_extension,
            report_url=report_url,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(frozen=True, slots=True)
class _Fetch:
    """`pypbx.ozml.Notifications` for a message's script (GoTo), ordered with its reports."""

    notifier: Notifier
    key: str

    async def fetch(self, url: str, name: str, fields: Sequence[tuple[str, str]]) -> str | None:
        answer = await self.notifier.request(url, name, list(fields), key=self.key)
        return answer.body if answer.ok else None


def message_text(content_type: str, body: bytes) -> str | None:
    """The body as text (for IncomingSMS), decoded by its charset (UTF-8 by default); None
    when the content is not text/*."""
    if not body and not content_type:
        return ""
    media, _, params = content_type.partition(";")
    if not media.strip().lower().startswith("text/"):
        return None
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            charset = value.strip().strip('"')
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


def _user_part(number: str) -> str:
    """A number as a SIP URI user part (`101@host` -> `101`, `#` escaped)."""
    return quote(number.partition("@")[0], safe=_USER_SAFE)


def _local_time(moment: datetime) -> str:
    """`yyyy-MM-dd HH:mm:ss` in the PBX's local time, as Ozeki's notifications show times."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _http_failure(answer: NotificationReply) -> str:
    if answer.error is not None:
        return answer.error
    return f"HTTP {answer.status}"
