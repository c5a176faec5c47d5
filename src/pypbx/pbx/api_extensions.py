"""API extensions at work: calls to them (IncomingCall), calls from them (the `Call` command,
CallConnected), and the OzML scripts that drive those calls (spec http-api 7, 8.1;
notifications-ozml 4.4, 4.5, 4.11, 5).

Each script runs in its own task for its call; the call's end cancels nothing by force, the
script's next action simply finds the call gone (`CallGone`) and the script stops, as the
spec's execution model says. Notifications that steer a live call (IncomingCall,
CallConnected, DtmfEntered, GoTo) are requests the script waits for; reports (Error,
CallFinished) are fire-and-forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypbx.media.sounds import error_tone
from pypbx.messaging.email import EmailSender
from pypbx.notify import Notifier
from pypbx.ozml import CallGone, Interpreter, OzmlError, Session, parse_ozml
from pypbx.pbx.agent import AgentCall, AgentCalls, ApiAgent
from pypbx.pbx.alarm import Alarms
from pypbx.pbx.b2bua import B2BUA
from pypbx.pbx.call import Call
from pypbx.pbx.call_media import CallMedia
from pypbx.pbx.messages import MessageRouter
from pypbx.pbx.ozml_actions import CallEvents, PbxCallActions
from pypbx.store.records import ExtensionRecord, api_extension_settings
from pypbx.store.store import Store

__all__ = ["ApiExtensionUnavailableError", "ApiExtensions", "CallConnectFailedError"]

log = logging.getLogger(__name__)

DECISION_WAIT = 5.0  # spec 8.1 [REC]: answer Call once ringing or failed, at most this late

# SIP failure of the outgoing call -> the result state Call's 402 names (spec 8.1, 6.5)
_FAILURE_STATES = {404: "NotFound", 484: "NotFound", 604: "NotFound", 486: "Busy", 600: "Busy"}
_FAILURE_STATES |= {603: "Rejected", 480: "NotAnswered", 408: "NotAnswered", 487: "Cancelled"}


class ApiExtensionUnavailableError(LookupError):
    """Unknown, disabled, not an API extension, or not permitted to this user (code 401)."""


class CallConnectFailedError(RuntimeError):
    """The `Call` failed before it rang (code 402); `state` is the result state."""

    def __init__(self, dialed: str, state: str) -> None:
        super().__init__(f"call to {dialed} failed: {state}")
        self.dialed = dialed
        self.state = state


# Requests that steer the script's own call onwards: pointless once the far party has hung
# up (RecordCompleted, by contrast, still reports a recording that a hang-up ended, 4.3).
_STEERING = frozenset({"DtmfEntered", "GoTo"})


@dataclass(frozen=True)
class _ScriptNotifications:
    """`pypbx.ozml.Notifications` for one call's script: requests ordered with its reports.

    A steering request for a call that has ended is not sent, and a reply that arrives after
    the call ended is not run: both raise CallGone, which stops the script (spec 5.3 "if the
    far party hangs up, the script stops").
    """

    notifier: Notifier
    key: str | None
    call: Call | None = None

    async def fetch(self, url: str, name: str, fields: Sequence[tuple[str, str]]) -> str | None:
        call = self.call if name in _STEERING else None
        if call is not None and call.is_over:
            raise CallGone(call.id)
        reply = await self.notifier.request(url, name, list(fields), key=self.key)
        if call is not None and call.is_over:
            log.info("call %s: ended while %s was answered; reply dropped", call.id, name)
            raise CallGone(call.id)
        return reply.body if reply.ok else None


class ApiExtensions:
    def __init__(
        self,
        b2bua: B2BUA,
        media: CallMedia,
        agent: ApiAgent,
        store: Store,
        notifier: Notifier,
        *,
        email: Callable[[], EmailSender | None],
        recordings_dir: Path,
        sms: Callable[[], MessageRouter | None] = lambda: None,
    ) -> None:
        self.b2bua = b2bua
        self.media = media
        self.agent = agent
        self.store = store
        self.notifier = notifier
        self.events = CallEvents(b2bua, media)
        self.agent_calls = AgentCalls()
        self.alarms = Alarms(b2bua, media, agent, agent_calls=self.agent_calls)
        self._email = email
        self._sms = sms
        self._recordings = recordings_dir
        self._tasks: set[asyncio.Task[None]] = set()
        agent.on_incoming = lambda agent_call: self._spawn(self._incoming(agent_call))
        b2bua.agent = agent
        b2bua.on_call_ended.append(self._call_ended)

    def _call_ended(self, call: Call) -> None:
        self.agent_calls.discard(call.id)

    def actions(self, api_extension: str | None = None) -> PbxCallActions:
        return PbxCallActions(
            self.b2bua,
            self.media,
            self.events,
            self.agent,
            agent_calls=self.agent_calls,
            alarms=self.alarms,
            api_extension=api_extension,
            originate=self.originate,
            email=self._email,
            recordings_dir=self._recordings,
            sms=self._sms,
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------- calls to an extension
    async def _incoming(self, agent_call: AgentCall) -> None:
        call = self.b2bua.call_by_sip_call_id(agent_call.sip_call_id)
        if call is None:
            self.agent.reject(agent_call, 481, "Call/Transaction Does Not Exist")
            return
        self.agent_calls.add(call.id, agent_call)
        record = await self.store.get_extension(agent_call.api_extension)
        url = None
        if record is not None and record.type == "API":
            url = api_extension_settings(record).incoming_call_url
        if not url:
            log.info("call %s: API extension %s has no incoming call URL", call.id, call.dialed)
            self.agent.reject(agent_call, 480, "Temporarily Unavailable")
            return
        caller_leg = call.caller
        display = caller_leg.invite.from_addr.display_name if caller_leg is not None else None
        fields = [
            ("CallId", call.id),
            ("ApiExtension", agent_call.api_extension),
            ("Caller", call.source),
            ("CallerId", call.caller_id),
            ("CallerDisplayName", display or ""),
            ("Dialed", call.dialed),
        ]
        session = Session.incoming_call(
            call_id=call.id, api_extension=agent_call.api_extension, caller=call.source
        )
        text = await _ScriptNotifications(self.notifier, call.id).fetch(url, "IncomingCall", fields)
        await self._run(session, call, text)

    # ---------------------------------------------------------------- calls from an extension
    async def check_extension(self, number: str, username: str | None) -> ExtensionRecord:
        record = await self.store.get_extension(number)
        if record is None or record.type != "API" or not record.enabled:
            raise ApiExtensionUnavailableError(number)
        if username is not None and not api_extension_settings(record).allows(username):
            raise ApiExtensionUnavailableError(number)
        return record

    async def originate(
        self,
        *,
        api_extension: str,
        dialed: str,
        caller_id: str | None = None,
        caller_display_name: str | None = None,
        url: str | None = None,
        error_url: str | None = None,
        response_ozml: str | None = None,
        finished_url: str | None = None,
        ring_time: int | None = None,
        username: str | None = None,
    ) -> str:
        """The `Call` command: ring `dialed` from the API extension; return the CallId once
        it rings (or raise CallConnectFailedError), then run the call in the background."""
        record = await self.check_extension(api_extension, username)
        settings = api_extension_settings(record)
        agent_call = await self.agent.originate(
            api_extension,
            dialed,
            caller_id or settings.default_caller_id,
            caller_display_name or settings.default_display_name,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agent_call.ringing.wait(), DECISION_WAIT)
        call = self.b2bua.call_by_sip_call_id(agent_call.sip_call_id)
        if agent_call.final_status is not None or call is None:
            status = agent_call.final_status or 500
            state = _FAILURE_STATES.get(status, "Error")
            if error_url:
                self._error(error_url, None, api_extension, dialed, state)
            raise CallConnectFailedError(dialed, state)
        self.agent_calls.add(call.id, agent_call)
        self._spawn(
            self._placed(
                agent_call,
                call,
                dialed=dialed,
                url=url,
                error_url=error_url,
                response_ozml=response_ozml,
                finished_url=finished_url,
                ring_time=ring_time,
            )
        )
        log.info("call %s: API extension %s calls %s", call.id, api_extension, dialed)
        return call.id

    async def _placed(
        self,
        agent_call: AgentCall,
        call: Call,
        *,
        dialed: str,
        url: str | None,
        error_url: str | None,
        response_ozml: str | None,
        finished_url: str | None,
        ring_time: int | None,
    ) -> None:
        answered = asyncio.ensure_future(agent_call.answered.wait())
        ended = asyncio.ensure_future(agent_call.ended.wait())
        await asyncio.wait((answered, ended), timeout=ring_time, return_when="FIRST_COMPLETED")
        for waiter in (answered, ended):
            waiter.cancel()
        if not agent_call.answered.is_set():
            if not agent_call.ended.is_set():  # RingTime over
                self.agent.hangup(agent_call)
                await agent_call.ended.wait()
            state = _FAILURE_STATES.get(agent_call.final_status or 480, "Error")
            if error_url:
                self._error(error_url, call.id, agent_call.api_extension, dialed, state)
            self._finished(finished_url, call)
            return
        session = Session.call_connected(
            call_id=call.id, api_extension=agent_call.api_extension, dialed=dialed
        )
        if response_ozml is not None:
            text: str | None = response_ozml
        elif url:
            fields = [
                ("CallId", call.id),
                ("ApiExtension", agent_call.api_extension),
                ("Dialed", dialed),
                ("CallerId", call.presented or call.source),
                ("CallerDisplayName", call.caller_id),
            ]
            text = await _ScriptNotifications(self.notifier, call.id).fetch(
                url, "CallConnected", fields
            )
        else:
            text = None
        if not await self._run(session, call, text) and error_url:
            self._error(error_url, call.id, agent_call.api_extension, dialed, "Error")
        await agent_call.ended.wait()
        self._finished(finished_url, call)

    # ---------------------------------------------------------------- scripts
    async def _run(self, session: Session, call: Call, text: str | None) -> bool:
        """Run a reply on the call; an unusable reply ends it (IncomingCall: rejected) and
        makes this False."""
        agent_call = self.agent_calls.get(
            call.id,
            api_extension=session.api_extension,
            incoming=session.notification == "IncomingCall",
        )
        script = None
        if text is not None:
            try:
                script = parse_ozml(text)
            except OzmlError as exc:
                log.warning("call %s: %s reply is not OzML: %s", call.id, session.notification, exc)
        if script is None:
            if agent_call is not None:
                if session.notification == "IncomingCall":
                    self.agent.reject(agent_call, 480, "Temporarily Unavailable")
                else:
                    await self._error_prompt(session, call)
                    self.agent.hangup(agent_call)
            return False
        interpreter = Interpreter(
            self.actions(session.api_extension),
            _ScriptNotifications(self.notifier, call.id, call),
            session,
        )
        try:
            outcome = await interpreter.run(script)
        except Exception:
            log.exception("call %s: OzML script failed", call.id)
            if agent_call is not None:
                self.agent.hangup(agent_call)
            return False
        log.info("call %s: OzML script ended (%s)", call.id, outcome)
        return True

    async def _error_prompt(self, session: Session, call: Call) -> None:
        """The party hears why the call ends (the information tone), not sudden silence."""
        if call.is_over:
            return
        try:
            await self.actions().prompt(call.id, session.remote_party, error_tone())
        except Exception:  # the call went away meanwhile: nothing to tell
            log.debug("call %s: no error prompt", call.id, exc_info=True)

    # ---------------------------------------------------------------- reports
    def _error(
        self, url: str, call_id: str | None, api_extension: str, dialed: str, state: str
    ) -> None:
        fields = [
            ("CallId", call_id or ""),
            ("ApiExtension", api_extension),
            ("Dialed", dialed),
            ("Code", "402"),
            ("Message", f"Call connect to '{dialed}' failed with result state '{state}'"),
            ("State", state),
        ]
        self.notifier.post(url, "Error", fields, key=call_id)

    def _finished(self, url: str | None, call: Call) -> None:
        if not url:
            return
        now = asyncio.get_running_loop().time()
        fields = [
            ("CallId", call.id),
            ("Duration", str(round(call.talk_duration(now)))),
            ("State", call.result.value if call.result is not None else ""),
        ]
        self.notifier.post(url, "CallFinished", fields, key=call.id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
