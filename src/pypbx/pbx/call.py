"""The call model: a Call (one Ozeki CallId and state) made of Legs (one SIP dialog and one
RTP endpoint each).

Keeping the legs apart from the call is what later lets transfers re-bridge legs between
calls and hold/playback take over one leg's media without touching the other.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pypbx.media.endpoint import Bridge, CodecSpec, RtpEndpoint
from pypbx.media.inbound import InboundAudio
from pypbx.media.leg_output import LegOutput
from pypbx.media.player import Player
from pypbx.net.transport import Addr
from pypbx.pbx.control import ActiveCallInfo
from pypbx.pbx.dialplan import RouteDecision
from pypbx.pbx.states import CallState, HistoryResult
from pypbx.sip.dialog import Dialog
from pypbx.sip.digest_client import DigestClient
from pypbx.sip.message import Request, Response
from pypbx.sip.sdp import Codec, SessionDescription
from pypbx.sip.transaction import ClientTransaction, ServerTransaction
from pypbx.store.records import CallHistoryRecord

if TYPE_CHECKING:
    from pypbx.pbx.call_routing import LineRoute

_ID_ALPHABET = string.ascii_letters + string.digits


# Where the event loop's clock (monotonic) stands against the wall clock, read once: every
# call's times derive from it, so the start of a call created by a transfer can never come
# out before the end of the call it replaces, and a clock step does not bend call durations.
_LOOP_TO_WALL = time.time() - time.monotonic()


def wall_time(loop_time: float) -> datetime:
    """A moment of the event loop's clock (the default loop reads time.monotonic) as UTC."""
    return datetime.fromtimestamp(_LOOP_TO_WALL + loop_time, UTC)


def new_call_id() -> str:
    """6 random base62 characters, as Ozeki's ids look (uniqueness is checked by the caller)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


class LegKind(StrEnum):
    CALLER = "caller"  # the phone that called us: pypbx is its UAS
    CALLEE = "callee"  # a phone we called: pypbx is its UAC


@dataclass(eq=False)
class Leg:
    """One side of a call: a SIP dialog with one phone plus the RTP port facing it."""

    kind: LegKind
    call: Call
    peer: Addr  # where in-dialog requests to this phone go
    transport: str
    local_tag: str
    invite: Request  # the INVITE received (caller leg) or sent (callee leg)
    endpoint: RtpEndpoint | None = None
    dialog: Dialog | None = None
    server_txn: ServerTransaction | None = None
    client_txn: ClientTransaction | None = None
    extension_id: str | None = None
    remote_sdp: SessionDescription | None = None
    local_sdp: SessionDescription | None = None
    codec: CodecSpec | None = None
    remote_direction: str = "sendrecv"
    provisional_sent: int = 0  # caller leg: last provisional status relayed
    got_provisional: bool = False  # callee leg: a 1xx arrived, so CANCEL is allowed
    cancel_pending: bool = False  # callee leg: CANCEL waits for the first 1xx (§9.1)
    answer_2xx: Response | None = None  # caller leg: 200 being retransmitted until ACK
    last_ack: Request | None = None  # callee leg: re-sent when its 2xx is retransmitted
    retransmit: asyncio.TimerHandle | None = None
    digest: DigestClient | None = None  # callee leg through a line: answers its challenges
    player: Player | None = None  # what pypbx itself plays to this phone (hold music)
    output: LegOutput | None = None  # prompts and DTMF pypbx sends this phone
    inbound: InboundAudio | None = None  # tap on what the phone sends (DTMF, recording)
    final_status: int | None = None  # callee leg: the failure response that ended it
    terminated: bool = False

    @property
    def dialog_key(self) -> tuple[str, str]:
        return (self.invite.call_id, self.local_tag)

    @property
    def held(self) -> bool:
        return self.remote_direction in ("sendonly", "inactive")


@dataclass(eq=False)
class Call:
    """One end-to-end call as the HTTP API sees it."""

    id: str
    caller: Leg | None = None  # set right after creation
    callee: Leg | None = None  # the answering leg
    forks: list[Leg] = field(default_factory=list)  # callee legs still ringing
    state: CallState = CallState.RINGING
    source: str = ""
    caller_id: str = ""
    presented: str = ""  # number shown to the callee, if not `source` (Call's CallerId)
    destination: str = ""
    dialed: str = ""
    direction: str = "Internal"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = 0.0  # loop time
    answered: float | None = None
    ended: float | None = None
    result: HistoryResult | None = None
    bridge: Bridge | None = None
    callee_endpoint: RtpEndpoint | None = None  # shared by every callee leg (fork)
    fork_codecs: list[Codec] = field(default_factory=list)  # what callee legs are offered
    api_hold: bool = False  # held by the Hold command (only Unhold resumes it)
    # A call that carries on a transfer: its caller leg is a phone already in a dialog with
    # us (no INVITE to answer), and when the target fails the transferor is called back.
    caller_connected: bool = False
    recall_to: str | None = None
    recalled: bool = False
    ring_timer: asyncio.TimerHandle | None = None
    ring_time: float | None = None  # this attempt's ring time, if not the PBX's (Route)
    interceptions: int = 0  # RoutingInterception requests made for this call
    media_watch_from: float = 0.0  # loop time from which silence counts (after an unhold)
    route_decision: RouteDecision | None = None  # the dial plan rule routing this attempt
    ring_group: str | None = None  # the ring group being rung, if any
    group_members: list[str] = field(default_factory=list)  # Hunt: members still to ring
    group_fallback: str | None = None  # where the ring group goes when nobody answers
    line: str | None = None  # the outside line the call came in or goes out on
    line_route: LineRoute | None = None  # how it goes out on that line
    history_started: asyncio.Task[None] | None = None

    @property
    def is_over(self) -> bool:
        return self.state.is_final

    def legs(self) -> list[Leg]:
        legs = [leg for leg in (self.caller, self.callee) if leg is not None]
        legs.extend(leg for leg in self.forks if leg is not self.callee)
        return legs

    def other(self, leg: Leg) -> Leg | None:
        if leg is self.caller:
            return self.callee
        if leg is self.callee:
            return self.caller
        return None

    def let_go(self) -> None:
        """Unlink a finished call from its legs, and each leg from the callbacks it ran.

        Call and Leg point at each other, and a leg's DTMF tap, transactions and 2xx
        retransmission timer call back into it: left linked, every finished call is a knot of
        reference cycles that only the garbage collector frees, in 100-200 ms pauses of the
        event loop when it frees hundreds of calls at once. Unlinked, reference counting frees
        each call as it ends. Only for a call whose history is queued and media released.
        Legs keep `.call`: a late request in a leg's dialog (an ACK, a retransmitted BYE)
        still reads it.
        """
        for leg in self.legs():
            leg.inbound = None
            leg.client_txn = None
            leg.server_txn = None
            if leg.retransmit is not None:  # ended calls retransmit nothing (see B2BUA)
                leg.retransmit.cancel()
                leg.retransmit = None
        self.caller = self.callee = None
        self.forks = []

    def ring_duration(self, now: float) -> float:
        end = self.answered if self.answered is not None else (self.ended or now)
        return max(0.0, end - self.started)

    def talk_duration(self, now: float) -> float:
        if self.answered is None:
            return 0.0
        return max(0.0, (self.ended or now) - self.answered)

    def info(self, now: float) -> ActiveCallInfo:
        return ActiveCallInfo(
            call_id=self.id,
            state=self.state,
            source=self.source,
            caller_id=self.caller_id,
            destination=self.destination,
            caller_dialed=self.dialed,
            callee_dialed=self.destination,
            start_time=self.started_at.astimezone(),
            ring_duration=self.ring_duration(now),
            talk_duration=self.talk_duration(now),
        )

    def __post_init__(self) -> None:
        if self.started:
            self.started_at = wall_time(self.started)

    def _wall_time(self, moment: float | None) -> datetime | None:
        return None if moment is None else wall_time(moment)

    def history(self, now: float) -> CallHistoryRecord:
        return CallHistoryRecord(
            call_id=self.id,
            start_time=self.started_at,
            answer_time=self._wall_time(self.answered),
            end_time=self._wall_time(self.ended),
            direction=self.direction,
            source=self.source,
            destination=self.destination,
            dialed=self.dialed,
            caller_id=self.caller_id,
            state=self.result.value if self.result is not None else None,
            ring_duration=round(self.ring_duration(now), 3),
            talk_duration=round(self.talk_duration(now), 3),
        )
