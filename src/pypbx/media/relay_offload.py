"""Moving the RTP of plain bridged calls to the relay worker process, and taking it back.

Most of a call's life is two phones talking through a bridge that only rewrites headers.
That steady state is what the worker (`relay_worker`) does: faster than the event loop, and
on its own CPU, so call set-ups and API requests on the SIP loop no longer delay audio. The
moment anything else is wanted of a bridge (hold, a prompt, a recording, a transfer, new
SDP, hang-up), whatever asks for it first calls `RtpEndpoint.reclaim()`, which takes the
packets back *synchronously*: one round trip to the worker, whose answer carries the
counters, latch and stream positions it reached, so pypbx's own relay continues the phones'
streams without a jump. A bridge is handed over again once it has been plain for a while.

If the worker dies, every bridge it held falls back to the loop (their streams continue,
at worst with a marker bit) and a new worker is started a few seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pypbx.media.bridge import Bridge, CodecSpec, RelayDirection
from pypbx.media.endpoint import EndpointCounters, RelayHandover, RtpEndpoint
from pypbx.media.relay_wire import LegSetup, LegState, WireError, decode, encode_control
from pypbx.media.udp_peer import disconnect

if TYPE_CHECKING:
    from pypbx.media.endpoint import MediaManager

__all__ = ["OffloadedBridge", "RelayOffloader"]

log = logging.getLogger(__name__)

RECLAIM_TIMEOUT = 1.0  # a worker that does not answer a hand-back this fast is taken for dead
RESTART_DELAY = 5.0
_SENDING = 1.0  # both phones must have sent within this many seconds to hand a bridge over
_MAX_MESSAGE = 1 << 20


class OffloadedBridge:
    """A bridge the worker relays; `reclaim()` from either endpoint takes it back."""

    __slots__ = ("bases", "bridge", "id", "offloader")

    def __init__(
        self,
        offloader: RelayOffloader,
        bridge_id: int,
        bridge: Bridge,
        bases: tuple[EndpointCounters, EndpointCounters],
    ) -> None:
        self.offloader = offloader
        self.id = bridge_id
        self.bridge = bridge
        self.bases = bases  # the endpoints' counters when handed over

    def reclaim(self) -> None:
        self.offloader.reclaim(self)


class RelayOffloader:
    """Runs the relay worker and decides which bridges it relays."""

    def __init__(
        self,
        media: MediaManager,
        *,
        after: float = 2.0,
        period: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.media = media
        self.after = after  # a bridge must have existed this long (set-up churn is over)
        self.period = period
        self._clock = clock
        self._active: dict[int, OffloadedBridge] = {}
        self._ports: dict[int, RtpEndpoint] = {}  # offloaded endpoints by port (key presses)
        self._candidates: dict[Bridge, float] = {}  # bridge -> when first seen
        self._next_id = 1
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._restart_at = 0.0
        self._ready = False  # the worker said it is up (its packets would wait otherwise)
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def offloaded(self) -> int:
        """How many bridges the worker relays now."""
        return len(self._active)

    @property
    def running(self) -> bool:
        return self._sock is not None

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Start watching bridges; the worker itself starts when the first one qualifies."""
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep_forever())

    async def ensure_worker(self, timeout: float = 5.0) -> bool:
        """Start the worker now if it is not running; whether it is ready within `timeout`."""
        if self._sock is None:
            self._spawn()
        deadline = self._clock() + timeout
        while not self._ready and self._sock is not None and self._clock() < deadline:
            await asyncio.sleep(0.01)
        return self._ready

    async def close(self) -> None:
        """Take every bridge back and stop the worker."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for handle in list(self._active.values()):
            self.reclaim(handle)
        process = self._process
        self._stop_worker()
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, 2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)

    def sweep(self, now: float) -> int:
        """Hand over every bridge that has been plain for `after` seconds; how many went."""
        bridges = self.media.bridges()
        for gone in [b for b in self._candidates if b not in bridges]:
            del self._candidates[gone]
        due = []
        for bridge in bridges:
            if bridge.a.offload is not None or bridge.b.offload is not None:
                continue
            first = self._candidates.setdefault(bridge, now)
            if now - first >= self.after:
                due.append(bridge)
        waiting = self._sock is None and now >= self._restart_at
        if waiting and any(self._qualifies(bridge, now) for bridge in due):
            self._spawn()  # ready in a few hundred ms; these bridges go at the next sweep
        if not self._ready:
            return 0
        return sum(1 for bridge in due if self.offload(bridge, now))

    @staticmethod
    def _qualifies(bridge: Bridge, now: float) -> tuple[RelayHandover, RelayHandover] | None:
        """Both legs' hand-over state if `bridge` is in its steady state, else None."""
        a, b = bridge.a, bridge.b
        if not bridge.active or bridge.a_to_b.paused or bridge.b_to_a.paused:
            return None
        # each phone's stream must be fed by the relay (no prompt or music writer)
        if a.output.writer is not bridge.b_to_a or b.output.writer is not bridge.a_to_b:
            return None
        handover_a, handover_b = a.relay_handover(), b.relay_handover()
        if handover_a is None or handover_b is None:
            return None
        if now - handover_a.seen_at > _SENDING or now - handover_b.seen_at > _SENDING:
            return None  # both phones must be sending
        return handover_a, handover_b

    def offload(self, bridge: Bridge, now: float) -> bool:
        """Hand `bridge` to the worker if it is in its steady state; whether it went."""
        sock = self._sock
        if sock is None or not self._ready:
            return False
        handovers = self._qualifies(bridge, now)
        if handovers is None:
            return False
        handover_a, handover_b = handovers
        a, b = bridge.a, bridge.b
        rtp_a, rtp_b = a.rtp_socket, b.rtp_socket
        assert rtp_a is not None and rtp_b is not None  # relay_handover checked
        legs = [
            _setup(a, handover_a, bridge.a_codec, bridge.a_to_b),
            _setup(b, handover_b, bridge.b_codec, bridge.b_to_a),
        ]
        bridge_id = self._next_id
        self._next_id += 1
        message = encode_control({"op": "add", "id": bridge_id, "legs": legs})
        try:
            socket.send_fds(sock, [message], [rtp_a.fileno(), rtp_b.fileno()])
        except OSError as exc:
            log.warning("relay worker: cannot hand over a bridge: %s", exc)
            return False
        a.suspend_reading()
        b.suspend_reading()
        handle = OffloadedBridge(
            self, bridge_id, bridge, (copy.copy(a.counters), copy.copy(b.counters))
        )
        a.offload = b.offload = handle
        self._active[bridge_id] = handle
        self._ports[a.local_port] = a
        self._ports[b.local_port] = b
        log.debug(
            "relay worker: bridge %d (%d <-> %d) handed over", bridge_id, a.local_port, b.local_port
        )
        return True

    def reclaim(self, handle: OffloadedBridge) -> None:
        """Take `handle`'s bridge back; when this returns, the loop relays it again."""
        if self._active.pop(handle.id, None) is None:
            return
        bridge = handle.bridge
        a, b = bridge.a, bridge.b
        a.offload = b.offload = None
        self._candidates[bridge] = self._clock()  # plain again only after another `after`
        states = self._request_removal(handle.id)
        self._ports.pop(a.local_port, None)
        self._ports.pop(b.local_port, None)
        if states is not None:
            _continue(a, handle.bases[0], states[0], bridge.a_to_b, bridge.b_to_a)
            _continue(b, handle.bases[1], states[1], bridge.b_to_a, bridge.a_to_b)
            log.debug(
                "relay worker: bridge %d taken back after relaying %d packets",
                handle.id,
                states[0].packets_in + states[1].packets_in,
            )
        for endpoint in (a, b):
            if not endpoint.closed:
                if states is None:  # no answer: the worker may have left the socket connected
                    _take_from_anyone(endpoint)
                endpoint.resume_reading()

    # -- the worker process ------------------------------------------------------------------

    def _spawn(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pypbx.media.relay_worker", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            parent.close()
            log.error("relay worker cannot start (%s): the event loop relays every call", exc)
            self._restart_at = self._clock() + RESTART_DELAY
            return
        finally:
            child.close()
        parent.setblocking(False)
        self._sock = parent
        assert self._loop is not None
        self._loop.add_reader(parent.fileno(), self._readable)
        log.info("relay worker started (pid %d)", self._process.pid)

    def _stop_worker(self) -> None:
        self._ready = False
        sock = self._sock
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()  # the worker sees the end of its control socket and exits
        self._sock = None

    def _worker_lost(self, reason: str) -> None:
        log.error(
            "relay worker lost (%s): its %d calls are relayed by the loop",
            reason,
            len(self._active),
        )
        self._stop_worker()
        for handle in list(self._active.values()):
            self.reclaim(handle)  # no worker: the removal fails fast, state as handed over
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._restart_at = self._clock() + RESTART_DELAY

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            now = self._clock()
            if self._sock is None and self._process is not None:
                await asyncio.to_thread(self._process.wait)  # reap the one that was lost
                self._process = None
            try:
                self.sweep(now)
            except Exception:
                log.exception("relay worker: handing bridges over failed")

    # -- messages from the worker ------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(64):  # a fair share of the loop; the rest waits for the next turn
            if sock is None or sock is not self._sock:
                return
            try:
                message = sock.recv(_MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._worker_lost(str(exc))
                return
            if not message:
                self._worker_lost("it exited")
                return
            self._dispatch(message)

    def _dispatch(self, message: bytes) -> None:
        try:
            control, packet = decode(message)
        except WireError as exc:
            log.error("relay worker: %s", exc)
            return
        if packet is not None:
            endpoint = self._ports.get(packet[0])
            if endpoint is not None:
                endpoint.deliver_to_taps(packet[1])
        elif control is not None and control["op"] == "stats":
            self._apply_stats(control)
        elif control is not None and control["op"] == "ready":
            self._ready = True

    def _apply_stats(self, control: dict[str, Any]) -> None:
        try:
            bridges = control["bridges"].items()
            for key, legs in bridges:
                handle = self._active.get(int(key))
                if handle is None:
                    continue  # taken back meanwhile: the removal's answer was newer
                for endpoint, base, raw in zip(
                    (handle.bridge.a, handle.bridge.b), handle.bases, legs, strict=True
                ):
                    state = LegState.from_json(raw)
                    endpoint.adopt_relay_state(base, _counters(state), state.seen_at, state.source)
        except (WireError, AttributeError, TypeError, ValueError) as exc:
            log.error("relay worker: bad stats: %s", exc)

    def _request_removal(self, bridge_id: int) -> tuple[LegState, LegState] | None:
        """Ask the worker to give `bridge_id` back and wait for its final state.

        Blocking, briefly: the worker answers within a poll round (well under a
        millisecond when idle). Messages that arrive meanwhile are handled on the next
        loop turn, never from in here, so a key press that triggers another hand-back
        cannot run inside this one.
        """
        sock = self._sock
        if sock is None:
            return None
        try:
            sock.send(encode_control({"op": "remove", "id": bridge_id}))
        except OSError as exc:
            self._worker_lost(f"cannot ask for a bridge back: {exc}")
            return None
        deadline = time.monotonic() + RECLAIM_TIMEOUT
        loop = self._loop
        poller = select.poll()  # not select(): with thousands of RTP sockets, fds pass 1024
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._worker_lost("no answer to a hand-back")
                return None
            if not poller.poll(remaining * 1000):
                continue
            try:
                message = sock.recv(_MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._worker_lost(str(exc))
                return None
            if not message:
                self._worker_lost("it exited")
                return None
            try:
                control, packet = decode(message)
            except WireError as exc:
                log.error("relay worker: %s", exc)
                continue
            if control is not None and control["op"] == "removed" and control["id"] == bridge_id:
                return _final_states(control)
            if packet is not None:
                endpoint = self._ports.get(packet[0])
                if endpoint is not None and loop is not None:
                    loop.call_soon(endpoint.deliver_to_taps, packet[1])
            elif loop is not None:
                loop.call_soon(self._dispatch, message)


def _setup(
    endpoint: RtpEndpoint, handover: RelayHandover, codec: CodecSpec, outgoing: RelayDirection
) -> dict[str, Any]:
    output = endpoint.output
    return LegSetup(
        port=endpoint.local_port,
        source=handover.source,
        seen_at=handover.seen_at,
        quiet_period=handover.quiet_period,
        payload_types=handover.payload_types,
        forward=handover.forward,
        codec=(codec.payload_type, codec.name, codec.telephone_event_pt),
        output=(output.ssrc, output.sequence, output.timestamp, output.sent_at, True),
        direction=outgoing.export_state(),
    ).to_json()


def _counters(state: LegState) -> tuple[int, int, int, int, int, int]:
    return (
        state.packets_in,
        state.bytes_in,
        state.packets_out,
        state.bytes_out,
        state.rejected,
        state.unsent,
    )


def _final_states(control: dict[str, Any]) -> tuple[LegState, LegState] | None:
    legs = control.get("legs")
    if legs is None:
        return None
    try:
        first, second = (LegState.from_json(raw) for raw in legs)
    except (WireError, TypeError, ValueError) as exc:
        log.error("relay worker: bad final state: %s", exc)
        return None
    return first, second


def _take_from_anyone(endpoint: RtpEndpoint) -> None:
    """Undo the worker's `connect` of the socket (shared with pypbx): the latch decides again.

    The worker undoes it itself when it hands a bridge back with its state; this covers a
    hand-back without one (a worker that died with the bridge, or answered unreadably).
    """
    sock = endpoint.rtp_socket
    if sock is None:
        return
    try:
        disconnect(sock, sock.getsockname())
    except OSError as exc:
        log.error("relay worker: RTP port %d stays connected: %s", endpoint.local_port, exc)


def _continue(
    endpoint: RtpEndpoint,
    base: EndpointCounters,
    state: LegState,
    outgoing: RelayDirection,
    incoming: RelayDirection,
) -> None:
    """Pick up where the worker left `endpoint`: counters, latch, its stream, its relay."""
    endpoint.adopt_relay_state(base, _counters(state), state.seen_at, state.source)
    _, sequence, timestamp, sent_at, fed = state.output
    output = endpoint.output
    output.sequence, output.timestamp, output.sent_at = sequence, timestamp, sent_at
    if fed:
        output.writer = incoming
    outgoing.import_state(state.direction)
