"""Routing a call to its destination (spec notifications 9.3, 9.4, 4.1).

RoutingInterception first (when configured), then the dial plan's first matching rule, then
the extension with the dialled number; a destination may be an extension, an API extension,
a ring group (all at once or hunting) or an outside line. When an attempt ends without an
answer, the next ring-group member, the application, the rule's fallback or the group's
fallback is tried before the call ends with that outcome.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pypbx.media.endpoint import RtpEndpoint
from pypbx.pbx.call import Call
from pypbx.pbx.dialplan import Caller as DialPlanCaller
from pypbx.pbx.dialplan import Kind
from pypbx.pbx.registrar import Binding
from pypbx.pbx.sdp_helpers import SUPPORTED_CODECS, codec_spec, new_session_id
from pypbx.pbx.states import CallState, HistoryResult, RoutingState
from pypbx.sip.digest_client import UserCredentials
from pypbx.sip.sdp import negotiate
from pypbx.store.records import ExtensionRecord, line_settings

if TYPE_CHECKING:
    from pypbx.pbx.b2bua import B2BUA

log = logging.getLogger(__name__)

# How a failed attempt is told to routing interception (spec 7.2)
ROUTING_STATES = {
    HistoryResult.NOT_ANSWERED: RoutingState.NO_ANSWER,
    HistoryResult.BUSY: RoutingState.BUSY,
    HistoryResult.REJECTED: RoutingState.BUSY,
    HistoryResult.NOT_FOUND: RoutingState.NOT_FOUND,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """How an attempt failed: what the caller is told and how the call ends if it is final."""

    status: int
    reason: str | None
    state: CallState
    result: HistoryResult


NOT_FOUND = Failure(404, "Not Found", CallState.ERROR, HistoryResult.NOT_FOUND)
UNAVAILABLE = Failure(480, "Temporarily Unavailable", CallState.ERROR, HistoryResult.NOT_FOUND)
LINE_FULL = Failure(486, "Busy Here", CallState.BUSY, HistoryResult.BUSY)
LINE_ERROR = Failure(503, "Service Unavailable", CallState.ERROR, HistoryResult.ERROR)


@dataclass(frozen=True, slots=True)
class LineRoute:
    """How a call leaves through an outside line: the number sent and who it is from."""

    line: str
    number: str
    domain: str
    from_user: str
    credentials: UserCredentials | None


def dial_plan_caller(call: Call) -> DialPlanCaller:
    """Who calls, as the dial plan's From matches it."""
    if call.direction == "Inbound":
        return DialPlanCaller(extension_id=None, line=call.line, number=call.source)
    return DialPlanCaller(extension_id=call.source or None, line=None, number=call.source)


class CallRouting:
    """Works on the B2BUA's calls: routes them and tries the fallbacks."""

    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua

    async def route(
        self, call: Call, number: str, last_state: RoutingState, failure: Failure | None = None
    ) -> None:
        """Route a call (spec 9.3): RoutingInterception first when configured (its Route
        picks destination, ring time and caller ID, or rejects), else the dial plan's first
        matching rule, else the extension with that number. After a failed attempt the
        interception is asked again; without one, `_attempt_failed` follows the rule's
        fallbacks."""
        ring_time: float | None = None
        destination = number
        interceptor = self.b2bua.interceptor
        if interceptor is not None and interceptor.active() and call.interceptions < 10:
            call.interceptions += 1
            route = await interceptor.ask(call, last_state, number)
            if call.is_over:
                return
            if route is None and failure is not None:  # the chain ends: the last outcome
                self.give_up(call, failure)
                return
            if route is not None:
                if not route.destination:
                    log.info("call %s: rejected by routing interception", call.id)
                    self.b2bua._reject_caller(call, 486, "Busy Here")
                    self.b2bua._end(call, CallState.BUSY, HistoryResult.REJECTED)
                    return
                destination, ring_time = route.destination, float(route.ring_time)
                if route.caller_id:
                    call.presented = route.caller_id
                await self.ring_destination(call, destination, ring_time)
                return
        elif failure is not None:
            self.give_up(call, failure)
            return
        plan = await self.b2bua.router.plan()
        rule = plan.route(Kind.CALL, dial_plan_caller(call), number, datetime.now(UTC))
        if call.is_over:
            return
        if rule is not None:
            call.route_decision = rule
            destination, ring_time = rule.destination, float(rule.ring_time)
            if rule.caller_id:
                call.presented = rule.caller_id
            log.info(
                "call %s: rule %r routes %s to %s", call.id, rule.rule.name, number, destination
            )
        await self.ring_destination(call, destination, ring_time)

    async def ring_destination(self, call: Call, destination: str, ring_time: float | None) -> None:
        """Ring an extension, API extension or ring group; its failure goes to the fallbacks."""
        target = await self.b2bua.router.target(destination)
        if call.is_over:
            return
        routable = ("SIP", "RingGroup", "Line") + (("API",) if self.b2bua.agent is not None else ())
        if target is None or target.record.type not in routable:
            await self.attempt_failed(call, destination, RoutingState.NOT_FOUND, NOT_FOUND)
            return
        record = target.record
        if record.type == "Line":
            await self.ring_line(call, record, destination)
            return
        call.group_members = []
        if record.type == "RingGroup":
            reachable = {m: await self.bindings(m) for m in target.members}
            members = [m for m in target.members if reachable[m]]
            call.ring_group = record.id
            call.group_fallback = target.fallback
            ring_time = float(target.ring_time or 30)
            if target.hunt and members:
                call.group_members, members = members[1:], members[:1]
            bindings = [b for member in members for b in reachable[member]]
        else:
            bindings = await self.bindings(record.id)
        if not bindings:
            await self.attempt_failed(call, destination, RoutingState.NOT_FOUND, UNAVAILABLE)
            return
        await self.ring_bindings(call, record.id, bindings, ring_time)

    async def ring_line(self, call: Call, record: ExtensionRecord, destination: str) -> None:
        """Out through a provider: the number the rule rewrote, the line's caller ID, its
        channel limit; the provider's digest challenge is answered."""
        line = line_settings(record)
        decision = call.route_decision
        number = decision.number if decision is not None else call.dialed
        active = sum(1 for c in self.b2bua.calls.values() if c.line == line.name and c is not call)
        if not line.has_capacity(active):
            log.info("call %s: line %s has all %d channels busy", call.id, line.name, active)
            await self.attempt_failed(call, destination, RoutingState.BUSY, LINE_FULL)
            return
        proxy = line.outbound_proxy
        host, port = proxy.rsplit(":", 1) if proxy and ":" in proxy else (proxy, "5060")
        if not proxy:
            host, port = line.host, str(line.port)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, int(port))
        except (OSError, ValueError) as exc:
            log.warning("call %s: line %s: cannot resolve %s: %s", call.id, line.name, host, exc)
            await self.attempt_failed(call, destination, RoutingState.ERROR, LINE_ERROR)
            return
        address = (str(infos[0][4][0]), int(port))
        call.line = line.name
        call.direction = "Outbound"
        call.line_route = LineRoute(
            line=line.name,
            number=number,
            domain=line.host,
            from_user=line.caller_id or call.presented or call.source,
            credentials=(
                UserCredentials(line.authorization_name, line.password) if line.password else None
            ),
        )
        binding = Binding(
            extension_id=line.name,
            contact=f"sip:{number}@{line.host}:{line.port}",
            source=address,
            transport=line.transport,
            expires_at=datetime.now(UTC),
            call_id="line",
            cseq=1,
        )
        await self.ring_bindings(call, line.name, [binding], call.ring_time)

    async def bindings(self, extension_id: str) -> list[Binding]:
        """Where to ring an extension: its phones, or the agent for an API extension."""
        record = await self.b2bua.store.get_extension(extension_id)
        if record is None or not record.enabled:
            return []
        if record.type == "API":
            return [self.b2bua.agent.binding(extension_id)] if self.b2bua.agent is not None else []
        return self.b2bua.registrar.bindings(extension_id) if record.type == "SIP" else []

    async def ring_bindings(
        self, call: Call, destination: str, bindings: list[Binding], ring_time: float | None
    ) -> None:
        if call.callee_endpoint is None and not await self.open_media(call):
            return
        call.destination = destination
        call.ring_time = ring_time
        call.forks = [f for f in call.forks if not f.terminated]
        if call.bridge is not None:  # early media of an earlier attempt
            self.b2bua.media.unbridge(call.bridge)
            call.bridge = None
        self.b2bua._ring(call, bindings)

    async def attempt_failed(
        self, call: Call, number: str, state: RoutingState, failure: Failure
    ) -> None:
        """An attempt ended without answer: the next ring-group member (Hunt), the
        application (RoutingInterception), the rule's fallback, the group's fallback, or the
        end of the call with that outcome."""
        if call.is_over:
            return
        if call.group_members:
            member = call.group_members.pop(0)
            log.info("call %s: ring group %s hunts on to %s", call.id, call.ring_group, member)
            bindings = await self.bindings(member)
            if call.is_over:
                return
            if bindings:
                await self.ring_bindings(call, call.ring_group or member, bindings, call.ring_time)
            else:
                await self.attempt_failed(call, number, state, failure)
            return
        if call.interceptions:  # intercepted calls ask the application what next
            await self.route(call, number, state, failure)
            return
        if call.route_decision is not None:
            plan = await self.b2bua.router.plan()
            now = datetime.now(UTC)
            fallback = plan.fallback(
                call.route_decision, state.value, dial_plan_caller(call), call.dialed, now
            )
            if fallback is not None and not call.is_over:
                call.route_decision = fallback
                log.info(
                    "call %s: %s, falling back to %s", call.id, state.value, fallback.destination
                )
                await self.ring_destination(call, fallback.destination, float(fallback.ring_time))
                return
        if call.group_fallback:
            destination, call.group_fallback = call.group_fallback, None
            log.info(
                "call %s: ring group %s falls back to %s", call.id, call.ring_group, destination
            )
            await self.ring_destination(call, destination, None)
            return
        self.give_up(call, failure)

    def give_up(self, call: Call, failure: Failure) -> None:
        self.b2bua._reject_caller(call, failure.status, failure.reason)
        self.b2bua._end(call, failure.state, failure.result)

    async def open_media(self, call: Call) -> bool:
        """The caller's RTP port and answer, and the port the callee legs share."""
        caller = call.caller
        assert caller is not None and caller.remote_sdp is not None
        offer = caller.remote_sdp
        a_codecs, a_event = negotiate(offer, SUPPORTED_CODECS)
        endpoints: list[RtpEndpoint] = []
        try:
            endpoints.append(await self.b2bua.media.create_endpoint())
            endpoints.append(await self.b2bua.media.create_endpoint())
        except Exception:
            log.exception("call %s: no RTP port available", call.id)
            for ep in endpoints:
                await self.b2bua.media.release(ep)
            self.b2bua._reject_caller(call, 503, "Service Unavailable")
            self.b2bua._end(call, CallState.ERROR, HistoryResult.ERROR)
            return False
        if call.is_over:  # cancelled while we were allocating ports
            for ep in endpoints:
                await self.b2bua.media.release(ep)
            return False
        caller.endpoint, callee_endpoint = endpoints
        caller.endpoint.set_remote(offer.audio_endpoint())
        caller.codec = codec_spec(a_codecs[0], a_event)
        caller.local_sdp = self.b2bua.leg_media.answer(
            caller, offer, a_codecs[0], a_event, session_id=new_session_id(), version=1
        )
        call.callee_endpoint = callee_endpoint
        call.fork_codecs = [a_codecs[0]]
        call.fork_codecs += [c for c in SUPPORTED_CODECS if c.name != a_codecs[0].name]
        return True
