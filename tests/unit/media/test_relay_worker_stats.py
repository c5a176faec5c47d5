"""The relay worker's statistics go out in small chunks, one per pass of its loop: a whole
report at once held packets up for milliseconds at a few hundred calls."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pypbx.media import relay_worker
from pypbx.media.relay_wire import LegSetup, decode

BRIDGES = 60


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def worker() -> Iterator[tuple[relay_worker.RelayWorker, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.setblocking(False)
    made = relay_worker.RelayWorker(theirs)
    phone = _udp()
    for bridge in range(BRIDGES):
        legs = [_udp(), _udp()]
        setups = [
            LegSetup(
                port=leg.getsockname()[1],
                source=phone.getsockname(),
                seen_at=0.0,
                quiet_period=2.0,
                payload_types=None,
                forward=(),
                codec=(0, "PCMU", None),
                output=(1, 0, 0, None, True),
                direction=(None, 0, 0),
            ).to_json()
            for leg in legs
        ]
        made._add(bridge, setups, [leg.detach() for leg in legs])
    yield made, ours
    for leg in made.legs.values():
        leg.sock.close()
    for sock in (ours, theirs, phone):
        sock.close()


def _report(made: relay_worker.RelayWorker, ours: socket.socket) -> list[set[str]]:
    """One period's report, pass by pass: the bridges in each message sent."""
    made._stats_due = list(made.bridges)
    messages: list[set[str]] = []
    while made._stats_due:
        made._send_stats()
    while True:
        try:
            control, _ = decode(ours.recv(65536))
        except BlockingIOError:
            return messages
        assert control is not None and control["op"] == "stats"
        messages.append(set(control["bridges"]))


def test_a_report_goes_out_in_chunks_and_names_every_bridge_that_moved(
    worker: tuple[relay_worker.RelayWorker, socket.socket],
) -> None:
    made, ours = worker
    for leg in made.legs.values():
        leg.packets_in += 1
    messages = _report(made, ours)
    assert all(len(bridges) <= relay_worker.STATS_CHUNK for bridges in messages)
    assert set().union(*messages) == {str(bridge) for bridge in range(BRIDGES)}
    made.bridges[7][0].packets_in += 1
    assert _report(made, ours) == [{"7"}]  # only what moved since
    made._remove(7)
    ours.recv(65536)  # the removal's answer
    made.bridges[8][1].packets_in += 1
    assert _report(made, ours) == [{"8"}]
