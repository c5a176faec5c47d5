"""A small but real SMSC for tests: an asyncio SMPP 3.4 server on 127.0.0.1.

It speaks the subset an ESME needs (bind_transceiver/transmitter/receiver, enquire_link,
submit_sm, deliver_sm, unbind, generic_nack) with its own PDU code written from the SMPP
3.4 specification, deliberately not shared with pypbx or smpplib, so that both ends of a
test are not wrong in the same way. Accepted submits get message ids and, when asked for
(registered_delivery), a delivery receipt; concatenated parts (UDH) are put back together in
`messages` for assertions; `deliver()` injects a mobile-originated SMS; `stop()`/`start()`
keep the port so a client's reconnect can be tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESP = 0x80000000
ESME_RINVPASWD = 0x0000000E
ESME_RINVSYSID = 0x0000000F
ESME_RINVBNDSTS = 0x00000004

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~"}
GSM_EXT |= {0x3E: "]", 0x40: "|", 0x65: "€"}


def gsm_decode(data: bytes) -> str:
    out, it = [], iter(data)
    for octet in it:
        if octet == 0x1B:
            out.append(GSM_EXT.get(next(it, 0x20), "?"))
        else:
            out.append(GSM_BASIC[octet])
    return "".join(out)


def gsm_encode(text: str) -> bytes | None:
    ext = {ch: code for code, ch in GSM_EXT.items()}
    out = bytearray()
    for ch in text:
        if ch in ext:
            out += bytes([0x1B, ext[ch]])
        elif ch in GSM_BASIC and ch != "\x1b":
            out.append(GSM_BASIC.index(ch))
        else:
            return None
    return bytes(out)


def cstring(value: str) -> bytes:
    return value.encode("latin-1") + b"\0"


class Reader:
    """Reads a PDU body field by field."""

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def c(self) -> str:
        end = self.body.index(b"\0", self.pos)
        value = self.body[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return value

    def u8(self) -> int:
        self.pos += 1
        return self.body[self.pos - 1]

    def octets(self, n: int) -> bytes:
        self.pos += n
        return self.body[self.pos - n : self.pos]

    def tlvs(self) -> dict[int, bytes]:
        found = {}
        while self.pos + 4 <= len(self.body):
            tag, size = struct.unpack(">HH", self.body[self.pos : self.pos + 4])
            found[tag] = self.body[self.pos + 4 : self.pos + 4 + size]
            self.pos += 4 + size
        return found


@dataclass(frozen=True)
class Bind:
    command: int
    system_id: str
    password: str
    system_type: str
    accepted: bool
    at: float


@dataclass(frozen=True)
class SubmittedPart:
    message_id: str
    source_ton: int
    source_npi: int
    source: str
    dest_ton: int
    dest_npi: int
    destination: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes


@dataclass
class Message:
    """A whole message as the SMSC put it together from its parts."""

    source: str
    destination: str
    data_coding: int
    text: str
    parts: list[SubmittedPart] = field(default_factory=list)


@dataclass(eq=False)
class _Esme:
    writer: asyncio.StreamWriter
    bound: bool = False
    acks: dict[int, asyncio.Future[int]] = field(default_factory=dict)


class Smsc:
    """The SMSC. `receipt_stat` (None: no receipts) is the `stat:` of automatic receipts,
    `receipt_for` overrides it per destination; `reject_status` refuses every submit_sm."""

    def __init__(self, *, system_id: str = "pypbx", password: str = "secret") -> None:
        self.system_id, self.password = system_id, password
        self.port = 0
        self.receipt_stat: str | None = "DELIVRD"
        self.receipt_for: dict[str, str] = {}
        self.receipt_delay = 0.05
        self.reject_status = 0
        self.answer_enquire_link = True
        self.binds: list[Bind] = []
        self.parts: list[SubmittedPart] = []
        self.messages: list[Message] = []
        self.receipts_sent: list[tuple[str, str]] = []
        self.delivered_resp: list[int] = []
        self.enquire_links = 0
        self._server: asyncio.Server | None = None
        self._esmes: set[_Esme] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(0x1000)
        self._seq = itertools.count(1)
        self._changed = asyncio.Condition()
        self._assembly: dict[tuple[str, str, int], list[SubmittedPart]] = {}

    # -- lifecycle
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection (the port is kept for `start`)."""
        if self._server is not None:
            self._server.close()
        await self.drop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def drop(self) -> None:
        """Cut every connection without unbind, as a crashed SMSC or a dead link would."""
        for esme in list(self._esmes):
            esme.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- waiting
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_bound(self, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: any(e.bound for e in self._esmes), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- mobile originated
    async def deliver(
        self, source: str, destination: str, text: str, *, source_ton: int = 1
    ) -> None:
        """Send a mobile-originated SMS to the bound ESME (split with an 8-bit UDH when
        long) and wait for its deliver_sm_resp."""
        gsm = gsm_encode(text)
        data, coding, unit = (gsm, 0, 153) if gsm is not None else (None, 8, 134)
        payload = data if data is not None else text.encode("utf-16-be")
        if len(payload) <= (160 if coding == 0 else 140):
            await self.deliver_raw(source, destination, 0, coding, payload, source_ton=source_ton)
            return
        chunks = [payload[i : i + unit] for i in range(0, len(payload), unit)]
        for i, chunk in enumerate(chunks, start=1):
            udh = bytes([5, 0, 3, 0x42, len(chunks), i])
            await self.deliver_raw(
                source, destination, 0x40, coding, udh + chunk, source_ton=source_ton
            )

    async def send_receipt(self, message_id: str, stat: str, destination: str = "") -> None:
        """A delivery receipt in the SMPP 3.4 appendix B format, plus the TLVs."""
        now = time.strftime("%y%m%d%H%M")
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{now} done date:{now} stat:{stat} err:000 text:"
        )
        states = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5}
        states |= {"ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}
        tlvs = struct.pack(">HH", 0x001E, len(message_id) + 1) + cstring(message_id)
        tlvs += struct.pack(">HHB", 0x0427, 1, states.get(stat, 7))
        self.receipts_sent.append((message_id, stat))
        await self.deliver_raw(destination, "", 0x04, 0, text.encode("ascii"), tlvs=tlvs)

    async def deliver_raw(
        self,
        source: str,
        destination: str,
        esm_class: int,
        data_coding: int,
        short_message: bytes,
        *,
        source_ton: int = 1,
        tlvs: bytes = b"",
    ) -> int:
        """One deliver_sm to the first bound ESME; returns its deliver_sm_resp status."""
        esme = next((e for e in self._esmes if e.bound), None)
        if esme is None:
            raise RuntimeError("no ESME is bound")
        body = (
            cstring("")
            + bytes([source_ton, 1])
            + cstring(source)
            + bytes([1, 1])
            + cstring(destination)
            + bytes([esm_class, 0, 0])
            + cstring("")
            + cstring("")
            + bytes([0, 0, data_coding, 0, len(short_message)])
            + short_message
            + tlvs
        )
        seq = next(self._seq)
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        esme.acks[seq] = ack
        self._send(esme, DELIVER_SM, 0, seq, body)
        status = await asyncio.wait_for(ack, 5.0)
        self.delivered_resp.append(status)
        return status

    # -- server
    def _send(self, esme: _Esme, command: int, status: int, seq: int, body: bytes = b"") -> None:
        esme.writer.write(struct.pack(">IIII", 16 + len(body), command, status, seq) + body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        esme = _Esme(writer)
        self._esmes.add(esme)
        try:
            while True:
                header = await reader.readexactly(16)
                length, command, status, seq = struct.unpack(">IIII", header)
                body = await reader.readexactly(length - 16)
                keep = await self._handle(esme, command, status, seq, body)
                await writer.drain()
                await self._notify()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._esmes.discard(esme)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await self._notify()

    async def _handle(self, esme: _Esme, command: int, status: int, seq: int, body: bytes) -> bool:
        if command in (BIND_TRANSCEIVER, BIND_TRANSMITTER, BIND_RECEIVER):
            r = Reader(body)
            system_id, password, system_type = r.c(), r.c(), r.c()
            ok = system_id == self.system_id and password == self.password
            code = 0 if ok else (ESME_RINVSYSID if system_id != self.system_id else ESME_RINVPASWD)
            self.binds.append(Bind(command, system_id, password, system_type, ok, time.monotonic()))
            self._send(esme, command | RESP, code, seq, cstring("testsmsc") if ok else b"")
            esme.bound = ok
            await self._notify()
            return True
        if command == ENQUIRE_LINK:
            self.enquire_links += 1
            if self.answer_enquire_link:
                self._send(esme, ENQUIRE_LINK | RESP, 0, seq)
            return True
        if command == UNBIND:
            self._send(esme, UNBIND | RESP, 0, seq)
            esme.bound = False
            return False
        if command & RESP:
            ack = esme.acks.pop(seq, None)
            if ack is not None and not ack.done():
                ack.set_result(status)
            return True
        if command == SUBMIT_SM:
            if not esme.bound:
                self._send(esme, SUBMIT_SM | RESP, ESME_RINVBNDSTS, seq, cstring(""))
                return True
            await self._submit(esme, seq, body)
            return True
        self._send(esme, GENERIC_NACK, 0x00000003, seq)
        return True

    async def _submit(self, esme: _Esme, seq: int, body: bytes) -> None:
        r = Reader(body)
        r.c()  # service_type
        src_ton, src_npi, src = r.u8(), r.u8(), r.c()
        dst_ton, dst_npi, dst = r.u8(), r.u8(), r.c()
        esm_class, _protocol, _priority = r.u8(), r.u8(), r.u8()
        r.c(), r.c()  # schedule_delivery_time, validity_period
        registered, _replace, coding, _default_id, sm_length = (r.u8() for _ in range(5))
        short = r.octets(sm_length)
        if self.reject_status:
            self._send(esme, SUBMIT_SM | RESP, self.reject_status, seq, cstring(""))
            return
        message_id = f"{next(self._ids):x}"
        self._send(esme, SUBMIT_SM | RESP, 0, seq, cstring(message_id))
        part = SubmittedPart(
            message_id, src_ton, src_npi, src, dst_ton, dst_npi, dst, esm_class, registered,
            coding, short,
        )  # fmt: skip
        self.parts.append(part)
        self._assemble(part)
        await self._notify()
        stat = self.receipt_for.get(dst, self.receipt_stat)
        if registered & 0x03 and stat is not None:
            self._later(self._receipt_later(message_id, stat, dst))

    def _assemble(self, part: SubmittedPart) -> None:
        data = part.short_message
        ref, total = None, 1
        if part.esm_class & 0x40:
            udh, data = data[1 : 1 + data[0]], data[1 + data[0] :]
            assert udh[0] == 0x00 and udh[1] == 3, f"unexpected UDH {udh.hex()}"
            ref, total = udh[2], udh[3]
        if ref is None:
            self.messages.append(
                Message(part.source, part.destination, part.data_coding, "", [part])
            )
        else:
            key = (part.source, part.destination, ref)
            parts = self._assembly.setdefault(key, [])
            parts.append(part)
            if len(parts) < total:
                return
            del self._assembly[key]
            parts.sort(key=lambda p: p.short_message[5])
            self.messages.append(
                Message(part.source, part.destination, part.data_coding, "", parts)
            )
        message = self.messages[-1]
        raw = b"".join(
            p.short_message[1 + p.short_message[0] :] if p.esm_class & 0x40 else p.short_message
            for p in message.parts
        )
        message.text = gsm_decode(raw) if part.data_coding == 0 else raw.decode("utf-16-be")

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receipt_later(self, message_id: str, stat: str, destination: str) -> None:
        await asyncio.sleep(self.receipt_delay)
        with contextlib.suppress(RuntimeError, TimeoutError):
            await self.send_receipt(message_id, stat, destination)
