"""The relay worker driven in a thread through real sockets: packets that come thick (more
than one per wake-up) are all relayed, in order, with the outgoing numbering continuous."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pypbx.media import relay_worker
from pypbx.media.relay_wire import LegSetup, decode, encode_control
from pypbx.media.rtp import RtpPacket


@dataclass
class Rig:
    control: socket.socket  # pypbx's end
    phones: tuple[socket.socket, socket.socket]
    ports: tuple[int, int]  # the worker's RTP ports, phone A's then phone B's
    thread: threading.Thread

    def send(self, phone: int, sequence: int) -> None:
        packet = RtpPacket(0, sequence, 160 * sequence, 0xA0 + phone, payload=b"\xff" * 160)
        self.phones[phone].sendto(packet.serialize(), ("127.0.0.1", self.ports[phone]))

    def receive(self, phone: int, count: int, timeout: float = 5.0) -> list[RtpPacket]:
        got: list[RtpPacket] = []
        sock = self.phones[phone]
        sock.settimeout(timeout)
        while len(got) < count:
            got.append(RtpPacket.parse(sock.recv(2048)))
        return got

    def answer(self, timeout: float = 5.0) -> dict[str, Any]:
        self.control.settimeout(timeout)
        while True:
            control, _ = decode(self.control.recv(65536))
            if control is not None and control["op"] != "stats":
                return control


def _setup(port: int, phone: socket.socket, output_ssrc: int) -> dict[str, Any]:
    return LegSetup(
        port=port,
        source=phone.getsockname(),
        seen_at=time.monotonic(),
        quiet_period=2.0,
        payload_types=(0, 101),
        forward=(101,),
        codec=(0, "PCMU", 101),
        output=(output_ssrc, 10, 1600, time.monotonic(), True),
        direction=(None, 0, 0),
    ).to_json()


@pytest.fixture
def rig() -> Iterator[Rig]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    worker = relay_worker.RelayWorker(theirs)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    legs = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sock in (*legs, *phones):
        sock.bind(("127.0.0.1", 0))
    ports = (legs[0].getsockname()[1], legs[1].getsockname()[1])
    rig = Rig(ours, (phones[0], phones[1]), ports, thread)
    assert rig.answer()["op"] == "ready"
    setups = [_setup(ports[i], phones[i], 0xB0 + i) for i in range(2)]
    message = encode_control({"op": "add", "id": 1, "legs": setups})
    socket.send_fds(ours, [message], [legs[0].fileno(), legs[1].fileno()])
    try:
        yield rig
    finally:
        ours.close()  # the worker exits when pypbx's end closes
        thread.join(5.0)
        for sock in (*legs, *phones):
            sock.close()
        assert not thread.is_alive()


def test_thick_packets_are_all_relayed_in_order(rig: Rig) -> None:
    for sequence in range(100):  # back to back
        rig.send(0, sequence)
        rig.send(1, sequence)
    for phone in (0, 1):
        got = rig.receive(1 - phone, 100)
        assert [p.ssrc for p in got] == [0xB0 + 1 - phone] * 100
        for before, after in itertools.pairwise(got):
            assert (after.sequence - before.sequence) & 0xFFFF == 1
            assert after.timestamp - before.timestamp == 160
