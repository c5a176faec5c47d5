"""The relay worker's shortcut and its connected sockets, driven in one thread through real
sockets on 127.0.0.1.

The shortcut (`RelayWorker._pump` for packets `_Leg.arm` vouches for) must send the very
bytes the long way (`RelayDirection.relay`) sends, and leave the same state behind: every
packet sequence hypothesis makes up is run through a worker with the shortcut and one
without, and what the phones and pypbx receive is compared. Then the connected sockets:
the kernel keeps other senders out while the phone talks, a phone that fell silent can be
replaced (re-latching as `Latch` allows), and a handed-back socket takes anyone's packets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypbx.media import relay_worker
from pypbx.media.relay_wire import LegSetup, decode, encode_control

QUIET = 2.0
_HEADER = struct.Struct("!BBHII")


@dataclass
class Rig:
    """A worker with one bridge; phone i talks to leg i. Nothing runs unless a test pumps."""

    worker: relay_worker.RelayWorker
    control: socket.socket  # pypbx's end
    legs: list[int]  # the worker's descriptors, leg A's then leg B's
    ports: list[int]
    phones: list[socket.socket]
    intruder: socket.socket
    now: float = 100.0
    sockets: list[socket.socket] = field(default_factory=list)

    def send(self, phone: int, packet: bytes, *, sender: socket.socket | None = None) -> None:
        """`phone` (or `sender` in its place) sends a packet; the worker takes it at once."""
        (sender or self.phones[phone]).sendto(packet, ("127.0.0.1", self.ports[phone]))
        self.now += 0.02
        self.worker._pump([(self.legs[phone], 1)], self.now)

    def received(self, sock: socket.socket) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(sock.recv(2048))
            except BlockingIOError:
                return got

    def forwarded(self) -> list[Any]:
        """What the worker sent pypbx: packets it wants to see (key presses), by port."""
        return [decode(message)[1] for message in self.received(self.control)]

    def leg(self, index: int) -> relay_worker._Leg:
        return self.worker.legs[self.legs[index]]

    def close(self) -> None:
        for sock in (*self.sockets, *self.phones, self.intruder, self.control):
            sock.close()
        for leg in list(self.worker.legs.values()):
            leg.sock.close()


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def make_rig(codecs: tuple[tuple[int, str], tuple[int, str]]) -> Rig:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.setblocking(False)
    worker = relay_worker.RelayWorker(theirs)
    legs = [_udp(), _udp()]
    phones = [_udp(), _udp()]
    ports = [leg.getsockname()[1] for leg in legs]
    setups = [
        LegSetup(
            port=ports[i],
            source=phones[i].getsockname(),
            seen_at=100.0,
            quiet_period=QUIET,
            payload_types=(codecs[i][0], 101),
            forward=(101,),
            codec=(codecs[i][0], codecs[i][1], 101),
            output=(0xC0DE0000 + i, 500 * i, 8000 * i, 99.0, True),
            direction=(None, 0, 0),
        ).to_json()
        for i in range(2)
    ]
    fds = [leg.detach() for leg in legs]
    worker._add(1, setups, fds)
    return Rig(worker, ours, fds, ports, phones, _udp(), sockets=[theirs])


def rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    *,
    marker: bool = False,
    csrcs: int = 0,
    extension: bool = False,
    padding: int = 0,
) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | csrcs
    header = _HEADER.pack(first, (0x80 if marker else 0) | payload_type, sequence, timestamp, ssrc)
    header += b"\x00\x00\x00\x07" * csrcs
    if extension:
        header += b"\xbe\xde\x00\x01" + b"\x10\xaa\x00\x00"
    body = bytes(range(160))
    if padding:
        body += bytes(padding - 1) + bytes([padding])
    return header + body


# One packet a phone sends: what kind, and how its numbering moves from the last one.
_packet = st.tuples(
    st.sampled_from(["audio"] * 6 + ["event", "csrc", "extension", "padding", "unknown"]),
    st.sampled_from([1] * 8 + [0, 2, -1, -3, 40000]),  # sequence step: mostly +1
    st.sampled_from([0, 1]),  # which of two SSRCs (a phone may restart its stream)
    st.booleans(),  # marker
)
_laws = st.sampled_from([((0, "PCMU"), (0, "PCMU")), ((0, "PCMU"), (8, "PCMA"))])


def _play(rig: Rig, script: list[tuple[int, tuple[str, int, int, bool]]]) -> list[Any]:
    numbering = [[1000, 16000], [7000, 320]]
    for phone, (kind, step, ssrc_index, marker) in script:
        numbering[phone][0] = (numbering[phone][0] + step) & 0xFFFF
        numbering[phone][1] = (numbering[phone][1] + 160 * step) & 0xFFFFFFFF
        sequence, timestamp = numbering[phone]
        ssrc = (0xA0, 0xB0)[phone] + ssrc_index
        audio = rig.leg(phone).direction._audio_in  # type: ignore[union-attr]
        payload_type = {"event": 101, "unknown": 99}.get(kind, audio)
        packet = rtp(
            payload_type,
            sequence,
            timestamp,
            ssrc,
            marker=marker,
            csrcs=2 if kind == "csrc" else 0,
            extension=kind == "extension",
            padding=4 if kind == "padding" else 0,
        )
        rig.send(phone, packet)
    return [
        rig.received(rig.phones[0]),
        rig.received(rig.phones[1]),
        [(rig.ports.index(port), packet) for port, packet in rig.forwarded()],
        [_without_address(rig, rig.leg(i).state().to_json()) for i in range(2)],
    ]


def _without_address(rig: Rig, state: list[Any]) -> list[Any]:
    """A leg's state with its source as the index of the phone (rigs differ in ports)."""
    names = [list(phone.getsockname()) for phone in rig.phones]
    return [*state[:7], names.index(state[7]), *state[8:]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    laws=_laws,
    script=st.lists(st.tuples(st.sampled_from([0, 1]), _packet), min_size=1, max_size=40),
)
def test_the_shortcut_sends_what_the_long_way_sends(
    laws: tuple[tuple[int, str], tuple[int, str]], script: list[Any]
) -> None:
    results = []
    for shortcut in (True, False):
        with contextlib.ExitStack() as stack:
            if not shortcut:  # never armed: every packet takes the long way
                stack.enter_context(mock.patch.object(relay_worker._Leg, "arm", _never))
            rig = make_rig(laws)
            stack.callback(rig.close)
            results.append(_play(rig, script))
    assert results[0] == results[1]


def _never(leg: relay_worker._Leg) -> None:
    assert leg.steady_type == relay_worker._NO_SHORTCUT


def test_the_shortcut_takes_plain_audio_and_leaves_the_rest() -> None:
    """Not vacuous: after the first packet of a stream, plain audio takes the shortcut."""
    rig = make_rig(((0, "PCMU"), (0, "PCMU")))
    taken: list[bytes] = []
    long_way = rig.worker._take

    def take(leg: relay_worker._Leg, data: bytes, addr: Any, now: float) -> None:
        taken.append(data)
        long_way(leg, data, addr, now)

    rig.worker._take = take  # type: ignore[method-assign]
    try:
        for n in range(5):
            rig.send(0, rtp(0, n, 160 * n, 0xA0))
        rig.send(0, rtp(101, 5, 800, 0xA0))  # a key press: pypbx sees it
        rig.send(0, rtp(0, 6, 960, 0xA0, csrcs=1))
        rig.send(0, rtp(0, 7, 1120, 0xA0))
        assert [data[2:4] for data in taken] == [b"\x00\x00", b"\x00\x05", b"\x00\x06"]
        assert len(rig.received(rig.phones[1])) == 8
    finally:
        rig.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = make_rig(((0, "PCMU"), (0, "PCMU")))
    yield made
    made.close()


def test_while_the_phone_talks_the_kernel_keeps_other_senders_out(rig: Rig) -> None:
    phone_a = rig.phones[0].getsockname()
    assert rig.leg(0).sock.getpeername() == phone_a
    rig.send(0, rtp(0, 1, 160, 0xA0))
    rig.send(0, rtp(0, 2, 320, 0xA0), sender=rig.intruder)  # dropped by the kernel
    rig.send(1, rtp(0, 1, 160, 0xB0))
    assert len(rig.received(rig.phones[1])) == 1
    assert len(rig.received(rig.phones[0])) == 1  # B's packet went to A, not the intruder
    assert rig.received(rig.intruder) == []
    assert rig.leg(0).state().source == phone_a


def test_a_phone_silent_for_the_quiet_period_can_be_replaced(rig: Rig) -> None:
    rig.send(0, rtp(0, 1, 160, 0xA0))
    rig.worker._disconnect_quiet(rig.now + QUIET / 2)
    assert rig.leg(0).connected  # not silent long enough
    rig.now += QUIET
    rig.worker._disconnect_quiet(rig.now)
    assert not rig.leg(0).connected
    with pytest.raises(OSError):
        rig.leg(0).sock.getpeername()
    assert rig.leg(0).sock.getsockname()[1] == rig.ports[0]  # still its port
    moved = rig.intruder.getsockname()  # the phone behind a new NAT binding
    rig.send(0, rtp(0, 2, 320, 0xA0), sender=rig.intruder)
    assert len(rig.received(rig.phones[1])) == 2  # relayed: re-latched
    assert rig.leg(0).connected and rig.leg(0).sock.getpeername() == moved
    rig.send(1, rtp(0, 1, 160, 0xB0))
    assert len(rig.received(rig.intruder)) == 1  # B is heard at the new address
    rig.send(0, rtp(0, 3, 480, 0xA0))  # the old address now is someone else
    assert len(rig.received(rig.phones[1])) == 0


def test_a_phone_back_from_silence_is_connected_again(rig: Rig) -> None:
    rig.send(0, rtp(0, 1, 160, 0xA0))
    rig.now += QUIET
    rig.worker._disconnect_quiet(rig.now)
    rig.send(0, rtp(0, 2, 320, 0xA0))  # silence suppression ends: the same phone
    assert rig.leg(0).connected
    assert rig.leg(0).sock.getpeername() == rig.phones[0].getsockname()
    assert len(rig.received(rig.phones[1])) == 2


def test_a_handed_back_socket_takes_anyones_packets(rig: Rig) -> None:
    keep = [socket.socket(fileno=os.dup(fd)) for fd in rig.legs]  # pypbx's own
    rig.sockets.extend(keep)
    rig.send(0, rtp(0, 1, 160, 0xA0))
    rig.control.send(encode_control({"op": "remove", "id": 1}))
    assert rig.worker._control() is True
    answers = [decode(message)[0] for message in rig.received(rig.control)]
    assert [answer and answer["op"] for answer in answers] == ["removed"]
    for sock, port in zip(keep, rig.ports, strict=True):
        with pytest.raises(OSError):
            sock.getpeername()
        assert sock.getsockname()[1] == port
    rig.intruder.sendto(b"hello", ("127.0.0.1", rig.ports[0]))
    keep[0].setblocking(False)
    assert keep[0].recv(100) == b"hello"
