"""Faults pypbx must survive: SIGKILL with calls up, and webhook receivers that never answer.

A kill -9 loses every active call, but nothing else: the configuration and registrations are
in the store, each call's history row was written as it started and is closed as `Error` on
the next start, and phones carry on once they register again. A slow or dead application
behind a notification URL must never hold up the calls it is told about: CallChanged is a
report, delivered on its own, and calls set up, answer and end while it is still pending.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from peers.flows import PbxFactory, SippFactory, caller, finish, no_calls_left, register
from peers.pbx import PbxProcess
from peers.sipp import Sipp
from peers.webhook import Notification, WebServer

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")
OTHERS = [(f"3{n:03d}", f"pw-3{n:03d}") for n in range(8)]  # configured, never used
ACTIVE = 50


def callee(pbx: PbxProcess, sipp: SippFactory, calls: int, timeout: float = 60) -> Sipp:
    """Register 2000 from a fresh port and answer `calls` calls there (uas_answer)."""
    port = register(pbx, sipp, *CALLEE).local_port
    uas = sipp("uas_answer", local_port=port, calls=calls, timeout=timeout)
    uas.start().wait_until_listening()
    return uas


def history(pbx: PbxProcess) -> dict[str, str]:
    """GetCallHistory as {CallId: State}."""
    result = pbx.api("GetCallHistory", RowsPerPage="1000")
    assert result.code == 200, result.text
    return {row["CallId"]: row["State"] for row in result.rows("Calls", "Call")}


def passwords(pbx: PbxProcess) -> dict[str, str | None]:
    return {
        ext: pbx.api("GetConfig", ExtensionId=ext).root.findtext("Config/Password")
        for ext in pbx.extensions()
    }


# ================================================================ kill -9 with calls up


def test_sigkill_with_50_calls_up_loses_only_those_calls(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx(rtp_port_count=4 * ACTIVE + 40, config={"media": {"rtp_timeout": 0}})
    for ext, password in [CALLER, CALLEE, *OTHERS]:
        pbx.add_sip_extension(ext, password)
    config_before = passwords(pbx)
    assert len(config_before) == 2 + len(OTHERS)

    uas = callee(pbx, sipp, ACTIVE, timeout=180)
    # 5 calls a second (10 INVITEs with their challenges) stays inside the INVITE rate limit
    uac = caller(
        pbx,
        sipp,
        "uac_long_call",
        CALLEE[0],
        *CALLER,
        calls=ACTIVE,
        pause_ms=600_000,
        timeout=180,
        extra=["-r", "5", "-l", str(ACTIVE)],
    ).start()
    calls = pbx.wait_for_calls(
        lambda calls: len(calls) == ACTIVE and all(c["CallState"] == "InCall" for c in calls),
        timeout=90,
        interval=0.5,
    )
    active_ids = {c["CallId"] for c in calls}
    # each call's row is written as it starts: all 50 are in the history, still open
    assert _wait(lambda: history(pbx) == dict.fromkeys(active_ids, "")), history(pbx)

    pbx.kill()  # SIGKILL: no BYE, no history written at the end
    uac.stop()
    uas.stop()
    pbx.start()

    assert passwords(pbx) == config_before
    assert history(pbx) == dict.fromkeys(active_ids, "Error")
    assert pbx.active_calls() == []

    # the phones register again and calls go through as before
    register(pbx, sipp, *CALLER)
    uas = callee(pbx, sipp, 1)
    uac = caller(pbx, sipp, "uac_call", CALLEE[0], *CALLER, pause_ms=500).start()
    finish(uac, uas)
    no_calls_left(pbx)
    after = history(pbx)
    (new_id,) = set(after) - active_ids
    assert after[new_id] == "CallerHungUp"


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ================================================================ slow and dead webhooks

CALLS = 5
STATES = ["Ringing", "Answered", "InCall", "Completed"]


class BlackHole:
    """A TCP port that accepts connections and never reads or answers: a hung server."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                with self._lock:
                    self.connections.append(conn)

    def open_connections(self) -> int:
        """Connections pypbx still holds open, waiting for an answer that never comes."""
        with self._lock:
            alive = 0
            for conn in self.connections:
                conn.setblocking(False)
                try:
                    alive += conn.recv(1, socket.MSG_PEEK) != b""
                except BlockingIOError:
                    alive += 1  # nothing to read and not closed
                except OSError:
                    pass
            return alive

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for conn in self.connections:
                conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def run_calls(pbx: PbxProcess, sipp: SippFactory) -> None:
    """CALLS calls at once from 1000 to 2000, answered and hung up by the caller; both SIPp
    runs must succeed (no failed call)."""
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    uas = callee(pbx, sipp, CALLS)
    uac = caller(
        pbx,
        sipp,
        "uac_call",
        CALLEE[0],
        *CALLER,
        calls=CALLS,
        pause_ms=1000,
        extra=["-l", str(CALLS)],
    ).start()
    finish(uac, uas)
    no_calls_left(pbx)


def test_blocked_call_changed_receiver_never_delays_calls(
    start_pbx: PbxFactory, sipp: SippFactory, web: WebServer
) -> None:
    release = threading.Event()

    def blocked(note: Notification) -> bytes:
        release.wait(60)
        return b""

    web.handlers["/changed"] = blocked
    pbx = start_pbx(
        config={
            "http_api": {"call_changed_url": web.url("/changed")},
            "notifications": {"timeout": 60.0, "retries": 0},
        }
    )
    try:
        run_calls(pbx, sipp)
        # every call came and went while its first report (Ringing) was still unanswered;
        # the rest wait their turn behind it, in order
        assert not release.is_set()
        pending = web.named("CallChanged")
        assert [n.field("CallState") for n in pending] == ["Ringing"] * CALLS
    finally:
        release.set()
    assert _wait(lambda: len(web.named("CallChanged")) == CALLS * len(STATES), timeout=20)
    by_call: dict[str, list[str]] = {}
    for note in web.named("CallChanged"):
        by_call.setdefault(note.field("CallId"), []).append(note.field("CallState"))
    assert list(by_call.values()) == [STATES] * CALLS, by_call


def test_dead_call_changed_receiver_never_delays_calls(
    start_pbx: PbxFactory, sipp: SippFactory, black_hole: BlackHole
) -> None:
    pbx = start_pbx(
        config={
            "http_api": {"call_changed_url": black_hole.url("/changed")},
            "notifications": {"timeout": 60.0, "retries": 0},
        }
    )
    run_calls(pbx, sipp)
    # the calls are over, and pypbx is still waiting on the hung server for each of them
    assert black_hole.open_connections() >= CALLS
    assert pbx.stop() == 0, "pending notifications must not hold up a clean stop"
    rows = pbx.history()
    assert [row.state for row in rows] == ["CallerHungUp"] * CALLS


def test_dead_routing_receiver_only_costs_its_timeout(
    start_pbx: PbxFactory, sipp: SippFactory, black_hole: BlackHole
) -> None:
    """RoutingInterception steers the call, so pypbx must wait for it, but only up to the
    notification timeout: then the call is routed as if no application were configured."""
    pbx = start_pbx(
        config={
            "http_api": {"route_interception_url": black_hole.url("/route")},
            "notifications": {"timeout": 2.0, "retries": 0},
        }
    )
    run_calls(pbx, sipp)
    assert len(black_hole.connections) >= CALLS  # every call asked, none was answered
    assert pbx.stop() == 0
    assert [row.state for row in pbx.history()] == ["CallerHungUp"] * CALLS
