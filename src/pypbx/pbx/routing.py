"""RoutingInterception: the application decides where a call goes (spec notifications 4.1).

Before a call rings anywhere, and again after each attempt that ended without an answer,
pypbx asks the configured URL; a `Route` reply names the destination (and ring time and
caller ID), an empty one rejects the caller, and anything else (no Route, an empty reply, a
failed request) leaves the decision to the dial plan. This is how "ring John for 20 s, then
Michael for 30 s" chains are built without configuring them in the PBX.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pypbx.notify import Notifier
from pypbx.ozml import OzmlError, Route, parse_ozml
from pypbx.pbx.call import Call
from pypbx.pbx.states import RoutingState

__all__ = ["RouteInterceptor"]

log = logging.getLogger(__name__)


class RouteInterceptor:
    def __init__(self, notifier: Notifier, url: Callable[[], str | None]) -> None:
        self.notifier = notifier
        self._url = url

    def active(self) -> bool:
        return bool(self._url())

    async def ask(self, call: Call, last_state: RoutingState, last_number: str) -> Route | None:
        """The application's Route for the call, or None to let the dial plan decide."""
        url = self._url()
        if not url:
            return None
        first = last_state is RoutingState.CALLING
        fields = [
            ("CallerID", call.caller_id),
            ("OriginalDialedNumber", call.dialed),
            ("LastDialedNumber", last_number),
            ("LastCalledExtension", "" if first else call.destination),
            ("LastCallState", last_state.value),
            ("CallerExtension", call.source),
            ("CallId", call.id),
        ]
        reply = await self.notifier.request(url, "RoutingInterception", fields, key=call.id)
        if not reply.ok or not reply.body.strip():
            return None
        try:
            script = parse_ozml(reply.body)
        except OzmlError as exc:
            log.warning("call %s: RoutingInterception reply is not OzML: %s", call.id, exc)
            return None
        routes = [verb for verb in script.verbs if isinstance(verb, Route)]
        if len(routes) != len(script.verbs):
            log.info("call %s: only Route counts in a RoutingInterception reply", call.id)
        if not routes:
            return None
        route = routes[0]
        log.info(
            "call %s: routed by the application to %r for %d s",
            call.id,
            route.destination,
            route.ring_time,
        )
        return route
