"""CallChanged: every state change of every call, reported to the application (spec 4.2).

One notification per transition, in order per call (the notifier keeps a queue per CallId),
never holding up the call itself. The application may answer with 3PCC OzML (Speak into
the call, transfer it, hang it up...), which runs as its own script against the call, or
against other calls named by CallId.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from pypbx.notify import NotificationReply, Notifier
from pypbx.ozml import Interpreter, OzmlError, Script, Session, parse_ozml
from pypbx.pbx.b2bua import B2BUA
from pypbx.pbx.call import Call
from pypbx.pbx.ozml_actions import PbxCallActions
from pypbx.pbx.states import CallState

__all__ = ["CallChangedReporter"]

log = logging.getLogger(__name__)


class CallChangedReporter:
    def __init__(
        self,
        b2bua: B2BUA,
        notifier: Notifier,
        url: Callable[[], str | None],
        actions: Callable[[], PbxCallActions],
    ) -> None:
        self.b2bua = b2bua
        self.notifier = notifier
        self._url = url
        self._actions = actions
        self._tasks: set[asyncio.Task[None]] = set()
        b2bua.on_state_change.append(self._changed)

    def _changed(self, call: Call, state: CallState) -> None:
        url = self._url()
        if not url:
            return
        now = asyncio.get_running_loop().time()
        fields = [
            ("CallId", call.id),
            ("CallState", state.value),
            ("Source", call.source),
            ("CallerId", call.caller_id),
            ("Destination", call.destination),
            ("Dialed", call.dialed),
            ("StartTime", call.started_at.astimezone().isoformat()),
            ("RingDuration", str(int(call.ring_duration(now)))),
            ("TalkDuration", str(int(call.talk_duration(now)))),
        ]
        self.notifier.post(
            url,
            "CallChanged",
            fields,
            key=call.id,
            on_reply=lambda reply: self._reply(call.id, reply),
        )

    def _reply(self, call_id: str, reply: NotificationReply) -> None:
        if not reply.ok or not reply.body.strip():
            return
        try:
            script = parse_ozml(reply.body)
        except OzmlError as exc:
            log.warning("call %s: CallChanged reply is not OzML: %s", call_id, exc)
            return
        if not script.verbs:
            return
        session = Session.third_party(notification="CallChanged", call_id=call_id)
        interpreter = Interpreter(self._actions(), _NoCallbacks(), session)
        task = asyncio.get_running_loop().create_task(self._run(interpreter, script, call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(interpreter: Interpreter, script: Script, call_id: str) -> None:
        try:
            await interpreter.run(script)
        except Exception:
            log.exception("call %s: CallChanged script failed", call_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class _NoCallbacks:
    """3PCC scripts have no inline callbacks (DtmfEntered, GoTo belong to API extensions)."""

    async def fetch(self, url: str, name: str, fields: Sequence[tuple[str, str]]) -> str | None:
        return None
