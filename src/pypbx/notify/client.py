"""The webhook sender: notifications out, OzML back (spec notifications-ozml.md section 2).

Two ways to send, because the PBX needs two things from a notification:

* `Notifier.request` steers a live call (IncomingCall, RoutingInterception, CallConnected,
  DtmfEntered, GoTo): the caller awaits the OzML. One attempt, never retried - the call cannot wait
  (spec 2.3) - and never raises for a network or HTTP failure; the caller falls back on `ok=False`.
* `Notifier.post` reports (CallChanged, RecordCompleted of a finished call, SMSDeliveryReport,
  Error): returns at once, is queued, and is retried after connection errors, timeouts and 5xx
  (not after 4xx, which would fail the same way again). `on_reply` hears how it ended.

Whatever the kind, notifications with the same `key` (a CallId) to the same receiver (scheme,
host and port of the URL) are delivered in order, one at a time (lanes.py), so an application
never sees `CallChanged(Completed)` before `CallChanged(InCall)`, and a steering request waits for
that call's reports ahead of it. Receivers are kept apart because an application only sees its
own requests: a hung CallChanged logger must not hold up the routing application's
RoutingInterception for the same call. Requests on the wire are bounded
over all calls (`max_in_flight`), and so is the report backlog (`max_queue`, oldest dropped).

Wire format (wire.py): POST, form body with NotificationName first, the target's query string kept,
`user:password@` as basic auth; optional HMAC signature (signing.py documents it for receivers).
Redirects: see exchange.py. Every attempt is logged at INFO with the name, the URL without
credentials, the outcome and the duration; the fields and the reply body at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from pypbx.notify.exchange import Attempt, exchange, new_session
from pypbx.notify.lanes import Discard, LaneScheduler
from pypbx.notify.reply import NotificationReply, failed
from pypbx.notify.settings import NotifySettings
from pypbx.notify.wire import (
    Fields,
    FormPairs,
    InvalidTarget,
    Target,
    encode_form,
    form_pairs,
    parse_target,
    redact_url,
    request_headers,
)

logger = logging.getLogger(__name__)

OnReply = Callable[[NotificationReply], None]

# Reply bodies are logged at DEBUG up to this many characters.
_LOGGED_BODY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A notification ready to send: parsed once, so retries send identical bodies."""

    name: str
    target: Target | None
    display_url: str  # credential-free, for logs
    url_error: str | None
    pairs: FormPairs
    body: bytes


@dataclass(frozen=True, slots=True, eq=False)
class _Report:
    prepared: _Prepared
    on_reply: OnReply | None


class Notifier:
    """Sends notifications for the whole PBX; one instance, closed at shutdown.

    Must be used from the event loop's thread. `clock` gives wall-clock seconds for signature
    timestamps (tests pass a fixed one).
    """

    def __init__(self, settings: NotifySettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._shut = False  # connections closed: nothing can be sent any more
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._lanes: LaneScheduler[_Report] = LaneScheduler(
            self._deliver, self._discard, max_queued=settings.max_queue
        )

    @property
    def settings(self) -> NotifySettings:
        return self._settings

    @property
    def pending(self) -> int:
        """Reports accepted by `post` and not finished (queued, on the wire, or backing off)."""
        return self._lanes.pending

    @property
    def active_keys(self) -> int:
        """Calls (keys) with notifications waiting or in progress; 0 when idle."""
        return self._lanes.lanes

    async def request(
        self, url: str, name: str, fields: Fields, *, key: str | None = None
    ) -> NotificationReply:
        """Send a steering notification and return the application's reply; one attempt.

        Waits first for earlier notifications with the same `key`. Cancelling the awaiting task
        abandons the request (and its place in the queue) cleanly.
        """
        prepared = _prepare(url, name, fields)
        async with self._lanes.turn(_lane(key, prepared)) as granted:
            if not granted:
                return failed(Discard.CLOSED.value)
            attempt = await self._attempt(prepared, number=1, of=1)
        return attempt.reply

    def post(
        self,
        url: str,
        name: str,
        fields: Fields,
        *,
        key: str | None = None,
        on_reply: OnReply | None = None,
    ) -> None:
        """Queue a report and return at once.

        `on_reply` is called exactly once with the reply of the final attempt, or with an `ok=False`
        reply if the report was dropped (queue full) or cancelled (closed); never from inside
        `post` itself. It must not block; to act on the OzML, start a task from it.
        """
        prepared = _prepare(url, name, fields)
        self._lanes.submit(_lane(key, prepared), _Report(prepared, on_reply))

    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout` s, cancel the rest, close the connections."""
        await self._lanes.close(timeout)
        self._shut = True
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, report: _Report) -> None:
        """Run one report to its end: attempts with exponential backoff, then `on_reply`."""
        prepared = report.prepared
        total = 1 + self._settings.retries
        for number in range(1, total + 1):
            attempt = await self._attempt(prepared, number=number, of=total)
            if attempt.reply.ok or not attempt.retryable or number == total:
                break
            await asyncio.sleep(self._settings.backoff(number))
        reply = attempt.reply
        if not reply.ok:
            logger.warning(
                "%s to %s failed after %d attempt(s): %s",
                prepared.name,
                prepared.display_url,
                number,
                reply.error,
            )
        _call_back(report.on_reply, reply)

    def _discard(self, report: _Report, why: Discard) -> None:
        prepared = report.prepared
        if why is Discard.DROPPED:
            logger.warning(
                "notification queue full (%d): dropped %s to %s",
                self._settings.max_queue,
                prepared.name,
                prepared.display_url,
            )
        else:
            logger.info("%s to %s not sent: %s", prepared.name, prepared.display_url, why.value)
        if report.on_reply is None:
            return
        reply = failed(why.value)
        if why is Discard.CANCELLED:
            _call_back(report.on_reply, reply)
        else:  # from inside post(): keep the promise that on_reply never runs there
            asyncio.get_running_loop().call_soon(_call_back, report.on_reply, reply)

    async def _attempt(self, prepared: _Prepared, *, number: int, of: int) -> Attempt:
        """One logged attempt, bounded by the in-flight limit."""
        if prepared.target is None:
            attempt = Attempt(failed(f"invalid URL: {prepared.url_error}"), False)
        else:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s to %s fields: %r", prepared.name, prepared.display_url, prepared.pairs
                )
            headers = request_headers(self._settings, prepared.body, now=self._clock())
            async with self._in_flight:
                session = self._session_for_use()
                if session is None:
                    attempt = Attempt(failed(Discard.CLOSED.value), False)
                else:
                    attempt = await exchange(
                        session, prepared.target, prepared.body, headers, self._settings
                    )
        _log_attempt(prepared, attempt.reply, number, of)
        return attempt

    def _session_for_use(self) -> aiohttp.ClientSession | None:
        """The shared session, created on first use (inside the loop, as aiohttp wants)."""
        if self._shut:
            return None
        if self._session is None:
            self._session = new_session(self._settings)
        return self._session


def _lane(key: str | None, prepared: _Prepared) -> tuple[str, str] | None:
    """Ordering is per call and receiver; no key means no ordering at all."""
    if key is None:
        return None
    target = prepared.target
    receiver = (
        "" if target is None else f"{target.url.scheme}://{target.url.host}:{target.url.port}"
    )
    return (key, receiver)


def _prepare(url: str, name: str, fields: Fields) -> _Prepared:
    pairs = form_pairs(name, fields)
    body = encode_form(pairs)
    try:
        target = parse_target(url)
    except InvalidTarget as exc:
        return _Prepared(name, None, redact_url(url), str(exc), pairs, body)
    return _Prepared(name, target, str(target), None, pairs, body)


def _log_attempt(prepared: _Prepared, reply: NotificationReply, number: int, of: int) -> None:
    outcome = str(reply.status) if reply.error is None else reply.error
    logger.info(
        "%s to %s (attempt %d/%d): %s in %.3f s",
        prepared.name,
        prepared.display_url,
        number,
        of,
        outcome,
        reply.elapsed,
    )
    if reply.body and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s reply from %s: %s",
            prepared.name,
            prepared.display_url,
            reply.body[:_LOGGED_BODY_CHARS],
        )


def _call_back(on_reply: OnReply | None, reply: NotificationReply) -> None:
    if on_reply is None:
        return
    try:
        on_reply(reply)
    except Exception:  # the sender outlives a faulty callback
        logger.exception("notification on_reply callback failed")
