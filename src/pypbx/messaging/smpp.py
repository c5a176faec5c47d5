"""SMS to and from the outside world over SMPP 3.4: the SMSC connection behind SendSms for
numbers that are no extension (spec http-api 8.14, notifications-ozml 4.8, 4.9).

The wire protocol is smpplib's (PDU encoding, bind, framing); smpplib is a blocking socket
client, so one dedicated thread owns the connection and everything on it, and the event
loop talks to it only through a queue (submits in) and `call_soon_threadsafe` (results,
receipts and incoming messages out). Nothing here ever blocks the loop.

The thread binds as a transceiver, so submits, delivery receipts and mobile-originated
messages share one connection. When the SMSC is unreachable, refuses the bind or drops the
link, submits wait in the queue and the thread reconnects with exponential backoff; parts
that were sent but not yet answered go out again after the reconnect (at-least-once: a part
the SMSC took just before the link died may reach the phone twice, which beats losing it).
The queue is memory only: whoever needs a message to survive a restart (MessageRouter)
keeps it in its store and submits it again.

Text encoding and splitting (GSM-7 vs UCS-2, UDH concatenation) live in `sms_text`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from pypbx.messaging.sms_text import (
    Concat,
    SmsPart,
    decode_sms,
    encode_sms,
    parse_receipt,
)

__all__ = [
    "IncomingCallback",
    "ReceiptCallback",
    "SmppClosedError",
    "SmppError",
    "SmppGateway",
    "SmppQueueFullError",
    "SmppRejectedError",
    "SmppSettings",
]

log = logging.getLogger(__name__)

ReceiptCallback = Callable[[str, str], None]  # (message_id, delivered|expired|failed)
IncomingCallback = Callable[[str, str, str], None]  # (sender, recipient, text)

_BOUND_TRX = smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX
# submit_sm answers that mean "not now" rather than "never": the part is sent again later.
_RETRY_LATER = frozenset({0x14, 0x58})  # ESME_RMSGQFUL, ESME_RTHROTTLED
_RECEIPT_BITS = 0x3C  # esm_class message type: 0x04 SMSC delivery receipt, 0x20 intermediate
_UDHI = 0x40
_WINDOW = 10  # submit_sm PDUs awaiting their answer at once
_MAX_GROUPS = 100_000  # multipart messages whose receipts are still being collected
_REASSEMBLY_TIMEOUT = 600.0  # an incoming part whose siblings never come is dropped then


def readable(socks: list[Any], timeout: float) -> list[Any]:
    """Those of `socks` with data waiting (within `timeout` s): poll, not select, because
    the PBX holds thousands of RTP sockets and select fails on descriptors past 1024."""
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        by_fd[sock.fileno()] = sock
        poller.register(sock, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(0.0, timeout) * 1000)]


class SmppError(Exception):
    """A message could not be handed to the SMSC."""


class SmppRejectedError(SmppError):
    """The SMSC answered submit_sm with an error status; sending again will not help."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"SMSC rejected the message: {_status_text(status)}")


class SmppClosedError(SmppError):
    """The gateway was stopped before the message was accepted by the SMSC."""


class SmppQueueFullError(SmppError):
    """Too many messages are waiting for the SMSC already."""


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """The `[smpp]` configuration section: one SMSC account."""

    host: str
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    source_addr: str = ""  # the sender when SendSms gives none
    source_ton: int = 1  # international (for numbers without '+'); '+' numbers are always 1/1
    source_npi: int = 1  # ISDN/E.164
    dest_ton: int = 1
    dest_npi: int = 1
    enquire_link_interval: float = 30.0  # link check after this long without traffic
    response_timeout: float = 10.0  # connect, bind and every request's answer
    reconnect_min: float = 1.0  # backoff after the first failure, doubled up to the max
    reconnect_max: float = 60.0
    max_queue: int = 10_000
    delivery_receipts: bool = True  # registered_delivery=1 on every part

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must be set")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port!r}")
        for name in ("enquire_link_interval", "response_timeout", "reconnect_min"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be less than reconnect_min")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be positive, got {self.max_queue!r}")


@dataclass(eq=False)
class _Job:
    """One submit: its parts and the future the caller awaits (resolved on the loop)."""

    sender: str
    recipient: str
    parts: list[SmsPart]
    future: asyncio.Future[str]
    ids: list[str | None] = field(default_factory=list)
    failed: bool = False


@dataclass(frozen=True, slots=True)
class _Item:
    job: _Job
    index: int


@dataclass
class _Assembly:
    parts: dict[int, str]
    started: float


class SmppGateway:
    """A transceiver session with one SMSC: `submit` sends, callbacks report receipts and
    incoming messages (both called on the event loop that ran `start`)."""

    def __init__(
        self,
        settings: SmppSettings,
        on_receipt: ReceiptCallback | None = None,
        on_incoming: IncomingCallback | None = None,
    ) -> None:
        self.settings = settings
        self.on_receipt = on_receipt
        self.on_incoming = on_incoming
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inbox: SimpleQueue[_Job] = SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._queued = 0  # jobs not yet resolved (loop side)
        self._groups: dict[str, list[str]] = {}  # part id -> ids of all parts (loop side)
        self._outcomes: dict[str, dict[str, str]] = {}  # first id -> part id -> state
        self._reference = random.randrange(256)
        # Written by the thread, read anywhere (single assignments of immutable values).
        self.bound = False
        self.last_error: str | None = None
        self.bind_attempts = 0

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the connection thread (connecting happens there, in the background)."""
        if self._thread is not None:
            raise RuntimeError("SmppGateway already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="smpp", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Unbind, close, and fail what is still queued with SmppClosedError."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._wake_r.close()
        self._wake_w.close()

    @property
    def queued(self) -> int:
        """Submits not yet accepted by the SMSC (waiting, or in flight)."""
        return self._queued

    # ----------------------------------------------------------------- submit
    async def submit(self, sender: str | None, recipient: str, text: str) -> str:
        """Send `text` to `recipient` (`+` international or national digits) from `sender`
        (default `source_addr`); returns the SMSC's message id once every part is accepted,
        the id that `on_receipt` reports. Waits while the SMSC is down.

        Raises SmsTooLongError (over 255 parts), ValueError (empty recipient),
        SmppQueueFullError, SmppRejectedError (e.g. bad destination), SmppClosedError.
        """
        if self._loop is None or self._stopping.is_set():
            raise SmppClosedError("SMPP gateway is not running")
        if not recipient.strip():
            raise ValueError("recipient must not be empty")
        if self._queued >= self.settings.max_queue:
            raise SmppQueueFullError(f"{self._queued} messages already wait for the SMSC")
        self._reference = (self._reference + 1) % 256
        parts = encode_sms(text, self._reference)
        job = _Job(
            sender=sender or self.settings.source_addr,
            recipient=recipient.strip(),
            parts=parts,
            future=self._loop.create_future(),
            ids=[None] * len(parts),
        )
        self._queued += 1
        try:
            self._inbox.put(job)
            self._wake()
            return await job.future
        except asyncio.CancelledError:
            job.failed = True  # parts not yet sent are skipped; sent ones cannot be recalled
            raise
        finally:
            self._queued -= 1

    # ----------------------------------------------------------------- loop side
    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` on the loop; a loop that is gone has nobody to tell."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _accepted(self, job: _Job) -> None:
        ids = [part_id for part_id in job.ids if part_id is not None]
        if len(ids) > 1:
            while len(self._outcomes) >= _MAX_GROUPS:
                oldest = next(iter(self._outcomes))
                for part_id in self._groups.get(oldest, [oldest]):
                    self._groups.pop(part_id, None)
                del self._outcomes[oldest]
            for part_id in ids:
                self._groups[part_id] = ids
            self._outcomes[ids[0]] = {}
        if not job.future.done():
            job.future.set_result(ids[0])

    def _rejected(self, job: _Job, error: SmppError) -> None:
        if not job.future.done():
            job.future.set_exception(error)

    def _receipt(self, part_id: str, state: str) -> None:
        """Report a message once: multipart ones when every part is final, as delivered
        only if every part was."""
        ids = self._groups.get(part_id)
        if ids is None:
            self._report(part_id, state)
            return
        outcome = self._outcomes.setdefault(ids[0], {})
        outcome[part_id] = state
        if len(outcome) < len(ids):
            return
        for each in ids:
            self._groups.pop(each, None)
        del self._outcomes[ids[0]]
        final = next((s for s in outcome.values() if s != "delivered"), "delivered")
        self._report(ids[0], final)

    def _report(self, message_id: str, state: str) -> None:
        if self.on_receipt is None:
            return
        try:
            self.on_receipt(message_id, state)
        except Exception:
            log.exception("SMPP receipt callback failed for %s", message_id)

    def _incoming(self, sender: str, recipient: str, text: str) -> None:
        if self.on_incoming is None:
            log.info("SMS from %s to %s dropped: nobody takes incoming SMS", sender, recipient)
            return
        try:
            self.on_incoming(sender, recipient, text)
        except Exception:
            log.exception("SMPP incoming callback failed (from %s)", sender)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # ----------------------------------------------------------------- thread
    def _run(self) -> None:
        session = _Session(self)
        failures = 0
        try:
            while not self._stopping.is_set():
                if session.connect():
                    failures = 0
                    session.serve()
                    if self._stopping.is_set():
                        break
                    delay = self.settings.reconnect_min
                else:
                    delay = min(
                        self.settings.reconnect_max, self.settings.reconnect_min * 2**failures
                    )
                    failures += 1
                log.info("SMPP: reconnecting to the SMSC in %.1f s", delay)
                self._sleep(delay)
        except Exception:
            log.exception("SMPP thread crashed")
        finally:
            session.close()
            closed = SmppClosedError("SMPP gateway stopped before the SMSC took the message")
            for job in session.all_jobs():
                self._post(self._rejected, job, closed)

    def _sleep(self, seconds: float) -> None:
        """Wait, but not past a stop."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable([self._wake_r], left)
            self._drain_wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass


class _Session:
    """The thread's side: the smpplib client, the queue of parts and what is in flight."""

    def __init__(self, gateway: SmppGateway) -> None:
        self.gw = gateway
        self.settings = gateway.settings
        self.client: Any = None
        self.pending: deque[_Item] = deque()
        self.in_flight: dict[int, tuple[_Item, float]] = {}
        self.assembly: dict[tuple[str, str, int, int], _Assembly] = {}
        self.paused_until = 0.0
        self.last_rx = 0.0
        self.enquire_sent: float | None = None

    def all_jobs(self) -> list[_Job]:
        self.take_inbox()
        jobs = [item.job for item, _ in self.in_flight.values()]
        jobs += [item.job for item in self.pending]
        return list(dict.fromkeys(jobs))

    def take_inbox(self) -> None:
        while True:
            try:
                job = self.gw._inbox.get_nowait()
            except Empty:
                return
            self.pending.extend(_Item(job, i) for i in range(len(job.parts)))

    # -- connection
    def connect(self) -> bool:
        """Connect and bind as a transceiver; False (with `last_error` set) if either fails."""
        s = self.settings
        self.gw.bind_attempts += 1
        client = smpplib.client.Client(
            s.host,
            s.port,
            timeout=s.response_timeout,
            logger_name=f"{__name__}.wire",
            allow_unknown_opt_params=True,
        )
        try:
            client.connect()
            client.bind_transceiver(
                system_id=s.system_id, password=s.password, system_type=s.system_type
            )
        except smpplib.exceptions.PDUError as exc:
            status = exc.args[1] if len(exc.args) > 1 else 0
            error = f"bind_transceiver refused by {s.host}:{s.port}: {_status_text(status)}"
            return self._failed(client, error)
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            reason = str(exc) or "connection lost during bind"
            return self._failed(client, f"cannot connect to SMSC {s.host}:{s.port}: {reason}")
        self.client = client
        self.gw.bound = True
        self.gw.last_error = None
        self.last_rx = time.monotonic()
        self.enquire_sent = None
        log.info("SMPP: bound to %s:%s as %r", s.host, s.port, s.system_id)
        return True

    def _failed(self, client: Any, error: str) -> bool:
        if error != self.gw.last_error:
            log.warning("SMPP: %s", error)
        self.gw.last_error = error
        with contextlib.suppress(OSError):
            client.disconnect()
        return False

    def close(self) -> None:
        """Unbind politely (briefly) and close; unanswered parts go back to the queue."""
        client, self.client = self.client, None
        self.gw.bound = False
        for item, _ in sorted(self.in_flight.values(), key=lambda v: v[1], reverse=True):
            self.pending.appendleft(item)
        self.in_flight.clear()
        if client is None:
            return
        if client.state == _BOUND_TRX:
            with contextlib.suppress(Exception):
                client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
                self._wait_unbind_resp(client)
        with contextlib.suppress(OSError):
            client.disconnect()

    @staticmethod
    def _wait_unbind_resp(client: Any) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            ready = readable([client._socket], deadline - time.monotonic())
            if not ready or client.read_pdu().command == "unbind_resp":
                return

    # -- main loop
    def serve(self) -> None:
        """Run the bound session until the link fails or the gateway stops."""
        try:
            while not self.gw._stopping.is_set():
                self.take_inbox()
                self.send_some()
                self.check_link()
                self.wait_and_read()
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            error = f"SMSC link lost: {exc or type(exc).__name__}"
            log.warning("SMPP: %s", error)
            self.gw.last_error = error
        except _LinkDown as exc:
            log.warning("SMPP: %s", exc)
            self.gw.last_error = str(exc)
        finally:
            self.close()

    def send_some(self) -> None:
        now = time.monotonic()
        while self.pending and len(self.in_flight) < _WINDOW and now >= self.paused_until:
            item = self.pending.popleft()
            if item.job.failed:
                continue
            pdu = self._submit_pdu(item)
            self.client.send_pdu(pdu)
            self.in_flight[pdu.sequence] = (item, now)

    def _submit_pdu(self, item: _Item) -> Any:
        s = self.settings
        job, part = item.job, item.job.parts[item.index]
        src_ton, src_npi, src = _address(job.sender, s.source_ton, s.source_npi, sender=True)
        dst_ton, dst_npi, dst = _address(job.recipient, s.dest_ton, s.dest_npi, sender=False)
        return smpplib.smpp.make_pdu(
            "submit_sm",
            client=self.client,
            service_type="",
            source_addr_ton=src_ton,
            source_addr_npi=src_npi,
            source_addr=src,
            dest_addr_ton=dst_ton,
            dest_addr_npi=dst_npi,
            destination_addr=dst,
            esm_class=_UDHI if part.udhi else 0,
            data_coding=part.data_coding,
            registered_delivery=1 if s.delivery_receipts else 0,
            short_message=part.data,
        )

    def check_link(self) -> None:
        now = time.monotonic()
        timeout = self.settings.response_timeout
        if self.enquire_sent is not None and now - self.enquire_sent > timeout:
            raise _LinkDown("SMSC did not answer enquire_link")
        if any(now - sent > timeout for _, sent in self.in_flight.values()):
            raise _LinkDown("SMSC did not answer submit_sm")
        if self.enquire_sent is None and now - self.last_rx > self.settings.enquire_link_interval:
            self.client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=self.client))
            self.enquire_sent = now

    def wait_and_read(self) -> None:
        now = time.monotonic()
        deadlines = [self.last_rx + self.settings.enquire_link_interval]
        if self.enquire_sent is not None:
            deadlines.append(self.enquire_sent + self.settings.response_timeout)
        deadlines += [sent + self.settings.response_timeout for _, sent in self.in_flight.values()]
        if self.pending and now < self.paused_until:
            deadlines.append(self.paused_until)
        wait = max(0.0, min(deadlines) - now)
        sock = self.client._socket
        ready = readable([sock, self.gw._wake_r], wait)
        if self.gw._wake_r in ready:
            self.gw._drain_wake()
        if sock in ready:
            self.read_one()

    def read_one(self) -> None:
        pdu = self.client.read_pdu()
        self.last_rx = time.monotonic()
        command = pdu.command
        if command == "submit_sm_resp":
            self.on_submit_resp(pdu)
        elif command == "deliver_sm":
            self.on_deliver(pdu)
        elif command == "enquire_link":
            self._respond(pdu, "enquire_link_resp")
        elif command == "enquire_link_resp":
            self.enquire_sent = None
        elif command == "unbind":
            self._respond(pdu, "unbind_resp")
            raise _LinkDown("SMSC unbound the session")
        elif command == "generic_nack":
            found = self.in_flight.pop(pdu.sequence, None)
            log.warning("SMPP: generic_nack %s", _status_text(pdu.status))
            if found is not None:
                self._fail(found[0].job, SmppRejectedError(pdu.status))
        else:
            log.info("SMPP: ignored %s", command)

    def _respond(self, request: Any, command: str, status: int = 0) -> None:
        response = smpplib.smpp.make_pdu(command, client=self.client, status=status)
        response.sequence = request.sequence
        self.client.send_pdu(response)

    def on_submit_resp(self, pdu: Any) -> None:
        found = self.in_flight.pop(pdu.sequence, None)
        if found is None:
            log.warning("SMPP: submit_sm_resp for unknown sequence %s", pdu.sequence)
            return
        item = found[0]
        job = item.job
        if pdu.status in _RETRY_LATER:
            log.info("SMPP: SMSC busy (%s), sending again shortly", _status_text(pdu.status))
            self.pending.appendleft(item)
            self.paused_until = time.monotonic() + self.settings.reconnect_min
            return
        if pdu.status != 0:
            self._fail(job, SmppRejectedError(pdu.status))
            return
        job.ids[item.index] = _text(pdu.message_id)
        if all(part_id is not None for part_id in job.ids) and not job.failed:
            self.gw._post(self.gw._accepted, job)

    def _fail(self, job: _Job, error: SmppError) -> None:
        if not job.failed:
            job.failed = True
            log.warning("SMPP: message to %s failed: %s", job.recipient, error)
            self.gw._post(self.gw._rejected, job, error)

    def on_deliver(self, pdu: Any) -> None:
        self._respond(pdu, "deliver_sm_resp")
        esm_class = int(pdu.esm_class or 0)
        data = bytes(pdu.short_message or b"") or bytes(getattr(pdu, "message_payload", b"") or b"")
        coding = int(pdu.data_coding or 0)
        sender, recipient = _text(pdu.source_addr), _text(pdu.destination_addr)
        if esm_class & _RECEIPT_BITS:
            text, _ = decode_sms(data, coding, udhi=False)
            receipted = getattr(pdu, "receipted_message_id", None)
            state_tlv = getattr(pdu, "message_state", None)
            receipt = parse_receipt(
                text, _text(receipted) if receipted else None, state_tlv and int(state_tlv)
            )
            if receipt is None:
                log.warning("SMPP: unreadable delivery receipt %r", text)
            elif receipt.state is None:
                log.debug("SMPP: %s is %s", receipt.message_id, receipt.stat)
            else:
                log.info("SMPP: receipt %s %s", receipt.message_id, receipt.stat)
                self.gw._post(self.gw._receipt, receipt.message_id, receipt.state)
            return
        text, concat = decode_sms(data, coding, udhi=bool(esm_class & _UDHI))
        whole = self._reassemble(sender, recipient, text, concat)
        if whole is not None:
            self.gw._post(self.gw._incoming, _sender_number(pdu, sender), recipient, whole)

    def _reassemble(
        self, sender: str, recipient: str, text: str, concat: Concat | None
    ) -> str | None:
        if concat is None or concat.total <= 1:
            return text
        now = time.monotonic()
        for key in [k for k, a in self.assembly.items() if now - a.started > _REASSEMBLY_TIMEOUT]:
            log.warning("SMPP: incomplete SMS from %s dropped", key[0])
            del self.assembly[key]
        key = (sender, recipient, concat.reference, concat.total)
        assembly = self.assembly.setdefault(key, _Assembly({}, now))
        assembly.parts[concat.sequence] = text
        if len(assembly.parts) < concat.total:
            return None
        del self.assembly[key]
        return "".join(assembly.parts[i] for i in sorted(assembly.parts))


class _LinkDown(Exception):
    """The session must be dropped and bound again."""


def _address(number: str, ton: int, npi: int, *, sender: bool) -> tuple[int, int, str]:
    """TON/NPI and digits: `+` numbers are international E.164, an alphanumeric sender
    is TON 5, anything else uses the configured TON/NPI."""
    number = number.strip()
    if number.startswith("+"):
        return 1, 1, number[1:]
    if sender and number and not number.isdigit():
        return 5, 0, number[:11]
    return ton, npi, number


def _sender_number(pdu: Any, source: str) -> str:
    """The originator as IncomingSMS shows it: `+` for international numbers."""
    if int(pdu.source_addr_ton or 0) == 1 and source.isdigit():
        return "+" + source
    return source


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def _status_text(status: int) -> str:
    description = smpplib.consts.DESCRIPTIONS.get(status, "unknown status")
    return f"0x{status:08x} {description}"
