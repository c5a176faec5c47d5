"""A REGISTER whose extension is in the store's cache is answered within the datagram's own
callback (no task); one that needs the database gets a task and the same answer. The cache
is filled when the PBX starts, so the first storm after a restart finds it full."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pypbx.config import SecuritySettings
from pypbx.media.endpoint import MediaManager
from pypbx.net.stack import SipStack
from pypbx.net.transport import UdpTransport
from pypbx.pbx.security import protection
from pypbx.pbx.service import Pbx
from pypbx.sip.digest import compute_ha1
from pypbx.store import ExtensionRecord, Store

REALM = "pypbx"
PHONE = ("127.0.0.1", 61998)


class Capture:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def sip(ext: str) -> ExtensionRecord:
    return ExtensionRecord(ext, "SIP", username=ext, authorization_name=ext, password=f"pw-{ext}")


@pytest.fixture
async def pbx(tmp_path: Path) -> AsyncIterator[tuple[Pbx, UdpTransport, Capture]]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}")
    await store.add_extension(sip("1000"))
    stack = SipStack("127.0.0.1", 0, advertised="127.0.0.1", tcp=False)
    media = MediaManager("127.0.0.1", 41000, 41010, advertised_address="127.0.0.1")
    guard = protection(SecuritySettings())
    service = Pbx(
        stack,
        store,
        media,
        realm=REALM,
        nonce_secret=b"s" * 32,
        digest_algorithms=("MD5",),
        auth_bans=guard.sip_bans,
        flood_limits=guard.flood,
        call_limits=guard.calls,
    )
    await service.start()
    protocol = stack._udp
    assert protocol is not None and protocol.transport is not None
    protocol.transport.close()
    capture = Capture()
    protocol.transport = capture  # type: ignore[assignment]
    try:
        yield service, protocol, capture
    finally:
        await service.stop()
        await store.close()


def register(user: str, cseq: int, nonce: str | None = None, password: str = "") -> bytes:
    auth = ""
    if nonce is not None:
        ha1 = compute_ha1(user, REALM, password or f"pw-{user}")
        ha2 = hashlib.md5(b"REGISTER:sip:127.0.0.1").hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:00000001:abcd:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Authorization: Digest username="{user}",realm="{REALM}",nonce="{nonce}",'
            f'uri="sip:127.0.0.1",response="{response}",algorithm=MD5,qop=auth,'
            f'nc=00000001,cnonce="abcd"\r\n'
        )
    return (
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:61998;branch=z9hG4bK-{user}-{cseq};rport\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag=t{user}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: notask-{user}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@127.0.0.1:61998>\r\n"
        f"{auth}Expires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def nonce_of(data: bytes) -> str:
    found = re.search(rb'nonce="([^"]+)"', data)
    assert found is not None, data
    return found.group(1).decode()


async def test_a_cached_extension_registers_without_a_task(
    pbx: tuple[Pbx, UdpTransport, Capture],
) -> None:
    service, protocol, capture = pbx
    protocol.datagram_received(register("1000", 1), PHONE)
    assert not service._tasks and status(capture.sent[-1]) == 401
    protocol.datagram_received(register("1000", 2, nonce_of(capture.sent[-1])), PHONE)
    assert not service._tasks and status(capture.sent[-1]) == 200
    assert service.registrar.is_registered("1000")


async def test_an_extension_not_cached_yet_registers_through_a_task(
    pbx: tuple[Pbx, UdpTransport, Capture],
) -> None:
    service, protocol, capture = pbx
    await service.store.add_extension(sip("2000"))
    service.store._extensions.invalidate()  # as after a failed write: the cache starts over
    protocol.datagram_received(register("2000", 1), PHONE)
    assert status(capture.sent[-1]) == 401  # no lookup before credentials
    protocol.datagram_received(register("2000", 2, nonce_of(capture.sent[-1])), PHONE)
    assert len(service._tasks) == 1
    for task in list(service._tasks):
        await task
    assert status(capture.sent[-1]) == 200
    assert service.registrar.is_registered("2000")


async def test_a_wrong_password_answered_at_once_is_still_a_403(
    pbx: tuple[Pbx, UdpTransport, Capture],
) -> None:
    service, protocol, capture = pbx
    protocol.datagram_received(register("1000", 1), PHONE)
    wrong = register("1000", 2, nonce_of(capture.sent[-1]), password="guess")
    protocol.datagram_received(wrong, PHONE)
    assert not service._tasks
    assert capture.sent[-1].startswith(b"SIP/2.0 403 Forbidden\r\n")
    assert not service.registrar.is_registered("1000")


async def test_an_extension_added_while_running_registers_without_a_task(
    pbx: tuple[Pbx, UdpTransport, Capture],
) -> None:
    service, protocol, capture = pbx
    await service.store.add_extension(sip("3000"))  # the cache takes it in, stays complete
    protocol.datagram_received(register("3000", 1), PHONE)
    protocol.datagram_received(register("3000", 2, nonce_of(capture.sent[-1])), PHONE)
    assert not service._tasks and status(capture.sent[-1]) == 200
