"""Running an OzML Script for one call (spec 5.3 execution model, 5.4 contexts, section 6).

The interpreter owns the order of things and nothing else: every effect goes through
`CallActions`, every callback through `Notifications`, so the rules below are tested without
a PBX. Control flow that crosses nesting levels - Hangup, a call that ended, a GoTo jump, a
BackKey - travels as private exceptions, because a GoTo inside a DtmfEntered reply inside a
nested UserInput must unwind all of them at once (spec 5.3 "jump").

Context rules (5.4): API-extension verbs act on the script's own call and talk to the other
party (CallId and Party attributes ignored); 3PCC verbs default to the notified call and need a
Party; routing replies are read for `Route` only. A verb outside its context runs when it still
makes sense (Delay, Var, SendSms in a 3PCC reply; SendDTMF to the other party of an API
extension) and is skipped with a log line otherwise.

Decisions where the spec is silent: the first verb that is `Reject` counts only when it is the
very first verb; a 3PCC Speak/Play without Party is heard by `all` (as the HTTP command does
for Ozeki 10 clients) while a SendDTMF without Party is skipped; a UserInput among
InitialCommands is skipped (two menus cannot listen to the same keys).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pypbx.ozml.actions import (
    ActionFailed,
    CallActions,
    CallGone,
    Notifications,
    RecordOptions,
    RejectReason,
)
from pypbx.ozml.errors import OzmlError
from pypbx.ozml.menu import Choice, EntryRules, classify, collect_entry, run_prompts
from pypbx.ozml.parser import parse_ozml
from pypbx.ozml.session import Context, Ending, Limits, Outcome, Session
from pypbx.ozml.variables import resolve, substitute
from pypbx.ozml.verbs import (
    Array,
    AttendedTransfer,
    Beep,
    BlindTransfer,
    Call,
    Delay,
    DeleteFile,
    ForEach,
    Forward,
    GoTo,
    Hangup,
    Hold,
    MoveFile,
    PartyName,
    Play,
    ReceiveAlarmNotification,
    Record,
    Reject,
    Route,
    Script,
    SendAlarmNotification,
    SendDtmf,
    SendEmail,
    SendSms,
    Speak,
    Unhold,
    UserInput,
    Var,
    Verb,
)

logger = logging.getLogger(__name__)

# Verbs that need no call (spec 4.8): they run in call-less replies too.
_CALL_LESS: frozenset[type[Any]] = frozenset(
    {
        Call,
        SendSms,
        SendEmail,
        Delay,
        GoTo,
        Var,
        Array,
        ForEach,
        DeleteFile,
        MoveFile,
        SendAlarmNotification,
    }
)
# API-extension replies: documented set plus SendDTMF [R]; Reject is handled by `run`.
_API_EXTENSION: frozenset[type[Any]] = _CALL_LESS | {
    Speak,
    Play,
    Record,
    UserInput,
    Hangup,
    BlindTransfer,
    SendDtmf,
    Reject,
    ReceiveAlarmNotification,
    Beep,
}
# 3PCC replies: documented set plus Delay [R] and what needs no API extension's call.
_THIRD_PARTY: frozenset[type[Any]] = frozenset(
    {
        AttendedTransfer,
        BlindTransfer,
        Forward,
        Hangup,
        Hold,
        Unhold,
        Play,
        Record,
        SendDtmf,
        Speak,
        Beep,
        Delay,
        Var,
        Array,
        ForEach,
        Call,
        SendSms,
        SendEmail,
        DeleteFile,
        MoveFile,
        SendAlarmNotification,
    }
)


class _Stop(Exception):
    """Ends the whole script."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.value)
        self.ending = ending


class _Jump(Exception):
    """GoTo: the fetched script replaces everything that was left to run."""

    def __init__(self, script: Script) -> None:
        super().__init__("goto")
        self.script = script


class _Back(Exception):
    """BackKey of a nested UserInput: restart the UserInput identified by `target`."""

    def __init__(self, target: object) -> None:
        super().__init__("back")
        self.target = target


class Interpreter:
    """Runs OzML for one call (or one call-less notification).

    One instance per call script: variables, the GoTo count and the knowledge of which calls
    have ended live here, and inline replies (DtmfEntered, RecordCompleted) and GoTo targets
    run in the same instance, so they share them (spec 5.5).
    """

    def __init__(
        self,
        actions: CallActions,
        notifications: Notifications,
        session: Session,
        *,
        limits: Limits | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self._actions = actions
        self._notifications = notifications
        self._session = session
        self._limits = limits or Limits()
        self._vars: dict[str, str] = {k.lower(): v for k, v in (variables or {}).items()}
        self._arrays: dict[str, tuple[str, ...]] = {}
        self._gotos = 0
        self._gone: set[str] = set()  # calls known to have ended (3PCC: hung up by the script)
        self._menus: list[object] = []  # active UserInputs, innermost last (BackKey targets)
        self._route: Route | None = None
        self._in_prompts = 0

    @property
    def variables(self) -> Mapping[str, str]:
        return dict(self._vars)

    async def run(self, script: Script) -> Outcome:
        """Execute `script` to its end and apply the context's end-of-script rule (an
        API-extension call is hung up). CallGone from the script's own call ends the run."""
        session = self._session
        if session.context is Context.ROUTING:
            await self._run_routing(script)
            return self._outcome(Ending.COMPLETED)
        own = session.call_id
        try:
            if session.notification == "IncomingCall" and own is not None:
                if not script.verbs or isinstance(script.verbs[0], Reject):
                    reason: RejectReason = "busy" if script.verbs else "unavailable"
                    logger.info("call %s: IncomingCall rejected (%s)", own, reason)
                    await self._actions.reject(own, reason)
                    return self._outcome(Ending.REJECTED)
                await self._actions.answer(own)
            ending = await self._run_jumps(script)
        except CallGone as exc:
            if exc.call_id != own:
                raise
            logger.info("call %s: ended during its script", own)
            self._gone.add(own)
            return self._outcome(Ending.CALL_GONE)
        if session.context is not Context.API_EXTENSION or own is None:
            return self._outcome(ending)
        if own in self._gone:
            return self._outcome(Ending.CALL_GONE if ending is Ending.COMPLETED else ending)
        if ending in (Ending.COMPLETED, Ending.LIMIT):
            await self._final_hangup(own)
        return self._outcome(ending)

    def _outcome(self, ending: Ending) -> Outcome:
        return Outcome(ending, route=self._route, gotos=self._gotos, variables=self.variables)

    async def _final_hangup(self, call_id: str) -> None:
        """End of an API-extension script hangs the call up (spec 5.3 [D])."""
        try:
            await self._actions.hangup(call_id)
        except (CallGone, ActionFailed) as exc:
            logger.info("call %s: hang-up at the end of the script: %s", call_id, exc)

    async def _run_jumps(self, script: Script) -> Ending:
        while True:
            try:
                await self._block(script.verbs, 0)
                return Ending.COMPLETED
            except _Jump as jump:
                script = jump.script
            except _Stop as stop:
                return stop.ending

    async def _run_routing(self, script: Script) -> None:
        """A RoutingInterception reply is read for its first Route only (spec 4.1)."""
        for verb in script.verbs:
            if not isinstance(verb, Route):
                logger.info("routing reply: <%s> ignored", verb.ELEMENT)
            elif self._route is not None:
                logger.info("routing reply: a second <Route> ignored")
            else:
                route = resolve(verb, self._vars)
                self._route = route
                await self._actions.route(
                    destination=route.destination,
                    ring_time=route.ring_time,
                    caller_id=route.caller_id,
                    dialed_number=route.dialed_number,
                )

    # -- blocks and dispatch ------------------------------------------------------------------

    async def _block(self, verbs: Sequence[Verb], depth: int) -> None:
        if depth > self._limits.max_depth:
            logger.warning(
                "call %s: OzML nested deeper than %d levels; script stopped",
                self._session.call_id,
                self._limits.max_depth,
            )
            raise _Stop(Ending.LIMIT)
        for verb in verbs:
            await self._verb(verb, depth)

    async def _verb(self, verb: Verb, depth: int) -> None:
        if not self._allowed(verb):
            return
        resolved = resolve(verb, self._vars)
        try:
            await self._dispatch(resolved, depth)
        except ActionFailed as exc:
            logger.warning("call %s: %s failed: %s", self._session.call_id, verb.ELEMENT, exc)
        except CallGone as exc:
            own = self._session.call_id
            if exc.call_id == own and self._session.context is Context.API_EXTENSION:
                raise
            self._gone.add(exc.call_id)
            logger.info("%s skipped: call %s has ended", verb.ELEMENT, exc.call_id)

    def _allowed(self, verb: Verb) -> bool:
        """Spec 5.4: run a verb where it is meaningful, skip it with a log line elsewhere."""
        session, kind = self._session, type(verb)
        if session.context is Context.THIRD_PARTY:
            allowed = kind in _THIRD_PARTY
        elif session.call_id is None or session.call_id in self._gone:
            allowed = kind in _CALL_LESS
        else:
            allowed = kind in _API_EXTENSION
        if not allowed:
            logger.info(
                "%s reply: <%s> does not apply here; skipped", session.notification, verb.ELEMENT
            )
        return allowed

    async def _dispatch(self, verb: Verb, depth: int) -> None:
        match verb:
            case Speak():
                await self._speak(verb)
            case Play():
                await self._play(verb)
            case Beep():
                target = self._target(verb.call_id)
                party = self._party(verb.party, verb.ELEMENT, default="all")
                if target is not None and party is not None:
                    await self._actions.beep(target, party)
            case Delay():
                own = self._session.call_id
                bound = self._session.context is Context.API_EXTENSION and own not in self._gone
                await self._actions.delay(own if bound else None, verb.time)
            case Record():
                await self._record(verb, depth)
            case UserInput():
                await self._user_input(verb, depth)
            case GoTo():
                await self._goto(verb)
            case Hangup():
                await self._hangup(verb)
            case Call():
                await self._call(verb)
            case BlindTransfer():
                await self._blind_transfer(verb)
            case AttendedTransfer():
                await self._attended_transfer(verb)
            case Forward():
                target = self._target(verb.call_id)
                if target is not None and self._required(verb.destination, verb, "Destination"):
                    await self._actions.forward(target, verb.destination)
            case Hold():
                target = self._target(verb.call_id)
                if target is not None:
                    await self._actions.hold(target)
            case Unhold():
                target = self._target(verb.call_id)
                if target is not None:
                    await self._actions.unhold(target)
            case Reject():
                logger.info("<Reject> is only valid as the first verb of an IncomingCall reply")
            case SendDtmf():
                await self._send_dtmf(verb)
            case SendSms():
                await self._send_sms(verb)
            case SendEmail():
                if self._required(verb.recipient, verb, "Recipient"):
                    await self._actions.send_email(
                        recipient=verb.recipient,
                        subject=verb.subject,
                        message=verb.message,
                        sender=verb.sender,
                        api_extension=verb.api_extension or self._session.api_extension,
                    )
            case Var():
                if self._required(verb.id, verb, "ID"):
                    self._set(verb.id, verb.value)
            case Array():
                if self._required(verb.id, verb, "ID"):
                    self._arrays[verb.id.lower()] = verb.items
            case ForEach():
                await self._for_each(verb, depth)
            case Route():
                logger.info("<Route> only applies to a RoutingInterception reply; skipped")
            case DeleteFile():
                if self._required(verb.path, verb, "Path"):
                    await self._actions.delete_file(verb.path)
            case MoveFile():
                if self._required(verb.source, verb, "Source") and self._required(
                    verb.target, verb, "Target"
                ):
                    await self._actions.move_file(verb.source, verb.target)
            case SendAlarmNotification():
                await self._send_alarm(verb)
            case ReceiveAlarmNotification():
                await self._receive_alarm(verb, depth)

    # -- helpers -----------------------------------------------------------------------------

    def _required(self, value: str, verb: Verb, attribute: str) -> bool:
        if value:
            return True
        logger.warning(
            "call %s: <%s> without %s skipped", self._session.call_id, verb.ELEMENT, attribute
        )
        return False

    def _target(self, call_id: str | None) -> str | None:
        """The call a verb acts on: its CallId in 3PCC (default: the notified call), else the
        script's own call; None (skip) when that call is known to have ended."""
        own = self._session.call_id
        target = (call_id or own) if self._session.context is Context.THIRD_PARTY else own
        if target is None:
            logger.info("%s reply: no call to act on; verb skipped", self._session.notification)
            return None
        if target in self._gone:
            logger.info("call %s has ended; verb skipped", target)
            return None
        return target

    def _party(
        self, party: PartyName | None, element: str, *, default: PartyName | None
    ) -> PartyName | None:
        """API extension: always the other party. 3PCC: the Party attribute, else `default`."""
        if self._session.context is not Context.THIRD_PARTY:
            return self._session.remote_party
        if party is not None:
            return party
        if default is None:
            logger.warning("3PCC <%s> without Party skipped", element)
        else:
            logger.info("3PCC <%s> without Party: played to %s", element, default)
        return default

    def _set(self, name: str, value: str) -> None:
        limit = self._limits.max_variable_chars
        if len(value) > limit:
            logger.warning("variable %s cut to %d characters", name, limit)
            value = value[:limit]
        self._vars[name.lower()] = value

    def _api_fields(self, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        """Fields of the API-extension notifications sent from inside a script (spec 4.6)."""
        session = self._session
        fields = list(extra)
        if session.call_id is not None:
            fields.append(("CallId", session.call_id))
        if session.api_extension is not None:
            fields.append(("ApiExtension", session.api_extension))
        if session.call_id is not None:
            fields.append(("Caller", session.remote_number))
        return fields

    async def _fetch(self, url: str, name: str, fields: Sequence[tuple[str, str]]) -> Script | None:
        """A callback's reply as a Script; None when the request or the parse failed."""
        body = await self._notifications.fetch(url, name, fields)
        if body is None:
            logger.info("call %s: %s to %s failed", self._session.call_id, name, url)
            return None
        try:
            return parse_ozml(body)
        except OzmlError as exc:
            logger.warning("call %s: reply to %s is not OzML: %s", self._session.call_id, name, exc)
            return None

    # -- verbs -------------------------------------------------------------------------------

    async def _speak(self, verb: Speak) -> None:
        target = self._target(verb.call_id)
        if target is None or not self._required(verb.text, verb, "Text"):
            return
        party = self._party(verb.party, verb.ELEMENT, default="all")
        if party is not None:
            await self._actions.speak(
                target, party, verb.text, language=verb.language, voice=verb.voice
            )

    async def _play(self, verb: Play) -> None:
        target = self._target(verb.call_id)
        if target is None or not self._required(verb.audio_file, verb, "AudioFile"):
            return
        party = self._party(verb.party, verb.ELEMENT, default="all")
        if party is None:
            return
        third_party = self._session.context is Context.THIRD_PARTY
        await self._actions.play(
            target,
            party,
            verb.audio_file,
            repeat=verb.repeat,
            timeout=verb.timeout,
            wait=not (third_party and verb.repeat),
        )

    async def _send_dtmf(self, verb: SendDtmf) -> None:
        target = self._target(verb.call_id)
        if target is None or not self._required(verb.keys, verb, "Keys"):
            return
        party = self._party(verb.party, verb.ELEMENT, default=None)
        if party is not None:
            await self._actions.send_dtmf(target, party, verb.keys)

    async def _record(self, verb: Record, depth: int) -> None:
        target = self._target(verb.call_id)
        if target is None:
            return
        options = RecordOptions(
            format=verb.format,
            finished_url=verb.finished_url,
            duration=verb.duration,
            inactivity=verb.inactivity,
            finish_digits=verb.finish_digits,
            record_path=verb.record_path,
        )
        if self._session.context is Context.THIRD_PARTY:
            await self._actions.start_recording(target, options)
            return
        if options.duration is None:
            options = dataclasses.replace(options, duration=self._limits.record_cap)
        result = await self._actions.record(target, self._session.remote_party, options)
        if result.call_ended:
            self._gone.add(target)  # the reply may still send messages (spec 4.3)
        if verb.finished_url:
            fields = [
                ("RecordURL", result.record_url),
                ("CallId", target),
                ("Format", result.format),
                ("Duration", str(round(result.duration))),
            ]
            if self._session.api_extension is not None:
                fields.append(("ApiExtension", self._session.api_extension))
            fields.append(("Reason", result.reason))
            if result.finish_digit:
                fields.append(("FinishDigit", result.finish_digit))
            reply = await self._fetch(verb.finished_url, "RecordCompleted", fields)
            if reply is not None:
                await self._block(reply.verbs, depth + 1)
        if result.call_ended:
            raise _Stop(Ending.CALL_GONE)

    async def _user_input(self, verb: UserInput, depth: int) -> None:
        """Spec 6.5 steps 1-5."""
        own = self._target(None)
        if own is None:
            return
        if self._in_prompts:
            logger.warning("call %s: <UserInput> inside InitialCommands skipped", own)
            return
        if verb.execute_sql:
            logger.info("call %s: UserInput ExecuteSQL is not supported; ignored", own)
        keys = tuple(substitute(item.key, self._vars) for item in verb.inputs)
        rules = EntryRules.of(verb, keys, verb.back_key)
        token = object()
        nested = bool(self._menus)
        self._menus.append(token)
        try:
            rounds = 0
            while rounds < self._limits.max_rounds:
                rounds += 1
                try:
                    if await self._menu_round(verb, rules, own, nested, depth):
                        return
                except _Back as back:
                    if back.target is not token:
                        raise
                    logger.info("call %s: back to the enclosing menu", own)
                    rounds = 0
            logger.info("call %s: UserInput gave up after %d rounds", own, rounds)
        finally:
            self._menus.pop()

    async def _menu_round(
        self, verb: UserInput, rules: EntryRules, own: str, nested: bool, depth: int
    ) -> bool:
        """One round: prompts, entry, branch. True when the UserInput is finished."""
        self._actions.clear_digits(own)
        self._in_prompts += 1
        try:
            first = await run_prompts(
                self._actions, own, self._block(verb.initial_commands, depth + 1)
            )
        finally:
            self._in_prompts -= 1
        entry = await collect_entry(self._actions, own, rules, first, verb.timeout, self._limits)
        if entry is None:
            return not verb.repeat
        choice, index = classify(entry, rules, verb.inputs, verb.forward_to_url)
        logger.info("call %s: entry %r -> %s", own, entry, choice.value)
        if choice is Choice.BACK:
            if nested:
                raise _Back(self._menus[-2])
            return True
        if choice is Choice.INPUT:
            await self._block(verb.inputs[index].verbs, depth + 1)
            return True
        if choice is Choice.FORWARD and verb.forward_to_url:
            fields = self._api_fields(("DtmfDigits", entry))
            reply = await self._fetch(verb.forward_to_url, "DtmfEntered", fields)
            if reply is not None:
                await self._block(reply.verbs, depth + 1)
            return True
        return not verb.repeat

    async def _goto(self, verb: GoTo) -> None:
        url = verb.url
        if not url.casefold().startswith(("http://", "https://")):
            logger.warning(
                "call %s: GoTo %r is not an http(s) URL; script ends",
                self._session.call_id,
                url[:80],
            )
            raise _Stop(Ending.COMPLETED)
        if self._gotos >= self._limits.max_gotos:
            logger.warning(
                "call %s: more than %d GoTo jumps; script stopped",
                self._session.call_id,
                self._limits.max_gotos,
            )
            raise _Stop(Ending.LIMIT)
        self._gotos += 1
        reply = await self._fetch(url, "GoTo", self._api_fields())
        raise _Jump(reply if reply is not None else Script((), root=None))

    async def _hangup(self, verb: Hangup) -> None:
        target = self._target(verb.call_id)
        if target is None:
            return
        await self._actions.hangup(target)
        self._gone.add(target)
        if self._session.context is not Context.THIRD_PARTY:
            raise _Stop(Ending.HUNG_UP)

    async def _call(self, verb: Call) -> None:
        api_extension = verb.api_extension or self._session.api_extension
        if not self._required(verb.dialled, verb, "Dialled"):
            return
        if api_extension is None:
            logger.warning("<Call> without ApiExtension outside an API-extension script skipped")
            return
        await self._actions.call(
            dialed=verb.dialled,
            api_extension=api_extension,
            caller_id=verb.caller_id,
            caller_display_name=verb.caller_display_name,
            url=verb.url,
            error_url=verb.error_url,
            response_ozml=verb.response_ozml,
            finished_url=verb.finished_url,
            ring_time=verb.ring_time,
        )

    async def _blind_transfer(self, verb: BlindTransfer) -> None:
        target = self._target(verb.call_id)
        if target is None or not self._required(verb.target, verb, "Target"):
            return
        if self._session.context is Context.THIRD_PARTY:
            if verb.transferor_party is None:
                logger.warning("3PCC <BlindTransfer> without TransferorParty skipped")
                return
            if await self._actions.blind_transfer(
                target,
                verb.target,
                verb.transferor_party,
                finished_url=verb.finished_url,
                timeout=None,
            ):
                self._gone.add(target)
            return
        done = await self._actions.blind_transfer(
            target,
            verb.target,
            self._session.own_party,
            finished_url=verb.finished_url,
            timeout=self._limits.transfer_timeout,
        )
        if done:
            self._gone.add(target)
            raise _Stop(Ending.TRANSFERRED)
        logger.info("call %s: transfer to %s failed; script continues", target, verb.target)

    async def _attended_transfer(self, verb: AttendedTransfer) -> None:
        transferred = self._target(verb.transferred_call_id)
        if transferred is None or not self._required(verb.target_call_id, verb, "TargetCallId"):
            return
        await self._actions.attended_transfer(
            transferred, verb.target_call_id, verb.transferor_party
        )

    async def _send_sms(self, verb: SendSms) -> None:
        if self._required(verb.recipient, verb, "Recipient") and self._required(
            verb.message, verb, "Message"
        ):
            await self._actions.send_sms(
                recipient=verb.recipient,
                message=verb.message,
                sender=verb.sender,
                api_extension=verb.api_extension or self._session.api_extension,
                delivery_report_url=verb.delivery_report_url,
            )

    async def _for_each(self, verb: ForEach, depth: int) -> None:
        items = self._arrays.get(verb.source.lower())
        if items is None:
            logger.info("<ForEach> over unknown array %r runs zero times", verb.source)
            return
        saved = self._vars.get("item")
        try:
            for item in items:
                self._vars["item"] = item
                await self._block(verb.verbs, depth + 1)
        finally:
            if saved is None:
                self._vars.pop("item", None)
            else:
                self._vars["item"] = saved

    async def _send_alarm(self, verb: SendAlarmNotification) -> None:
        for value, name in (
            (verb.phone_number, "PhoneNumber"),
            (verb.account_number, "AccountNumber"),
            (verb.event_code, "EventCode"),
            (verb.partition_number, "PartitionNumber"),
            (verb.zone_number, "ZoneNumber"),
        ):
            if not self._required(value, verb, name):
                return
        await self._actions.send_alarm(
            phone_number=verb.phone_number,
            account_number=verb.account_number,
            event_qualifier=verb.event_qualifier,
            event_code=verb.event_code,
            partition_number=verb.partition_number,
            zone_number=verb.zone_number,
            api_extension=verb.api_extension or self._session.api_extension,
            result_url=verb.result_url,
        )

    async def _receive_alarm(self, verb: ReceiveAlarmNotification, depth: int) -> None:
        target = self._target(None)
        if target is None:
            return
        alarm = await self._actions.receive_alarm(target)
        if alarm is None:
            logger.info("call %s: no alarm received", target)
            return
        for name, value in (
            ("account", alarm.account),
            ("eventqualifier", alarm.event_qualifier),
            ("eventcode", alarm.event_code),
            ("eventname", alarm.event_name),
            ("partition", alarm.partition),
            ("zone", alarm.zone),
        ):
            self._set(name, value)
        await self._block(verb.received, depth + 1)
