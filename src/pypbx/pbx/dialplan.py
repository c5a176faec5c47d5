"""The dial plan engine (spec notifications 9.3, 9.4): which rule routes a call or message,
and where it goes next when an attempt ends without an answer.

Sans-I/O: rules are plain frozen data, the instant comes in as `now`, nothing is read or
sent; the router owns the surrounding steps of 9.3:

1. `RoutingInterception` is asked before `route` (and before `fallback`); its `Route` wins;
2. `route` is step 2 (first enabled rule of the kind, ascending `Order`, whose `From`,
   `Pattern` and `TimeCondition` all match);
3. when `route` gives None, the router routes a dialled number equal to an enabled
   extension's number or ID to that extension (the implicit single rule) -- not done here,
   the engine knows nothing of extensions;
4. otherwise the call ends `NotFound`.

Fallback mechanics (9.4), decided here because the spec leaves them open:

* a destination in the outcome's `On...` field is tried next with the same rule's rewritten
  number, caller ID and ring time, so `OnError=voipservice2` is trunk failover with the
  number the first line was given. The decision keeps its rule, so that rule's `On...`
  fields also apply to the fallback attempt: `OnBusy=813, OnNoAnswer=voicemail` gives
  "812 busy -> 813; 813 unanswered -> voicemail";
* `Next` continues matching with the rules after the decision's rule (same kind, caller,
  dialled number and instant); the rule found brings its own destination, rewriting and
  `On...` fields;
* empty: None, the call ends with that outcome.

Termination: an `On...` destination already tried in the chain is not tried again (the
chain ends instead: `OnBusy` pointing back at a busy phone would ring it forever), `Next`
only moves forward through the plan, and no chain exceeds `max_attempts` attempts.
Destinations reached through `Next` are taken even when tried before: a rule that says
"ring 812 again" explicitly is obeyed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from pypbx.pbx.dialplan_config import FIELD_NAMES, rule_from_fields, rule_to_fields, rules_from_toml
from pypbx.pbx.dialplan_groups import DEFAULT_GROUP_RING_TIME, RingGroup, Strategy, hunt_order
from pypbx.pbx.dialplan_patterns import DialPlanError, NumberPattern, normalise_number
from pypbx.pbx.dialplan_rules import (
    ANY_CALLER,
    DEFAULT_RING_TIME,
    NEXT,
    AnyCaller,
    Caller,
    CallerMatch,
    FromExtensions,
    FromLines,
    FromNumber,
    Kind,
    Rule,
    format_caller_match,
    parse_caller_match,
)
from pypbx.pbx.dialplan_time import TimeCondition

__all__ = [
    "ANY_CALLER",
    "DEFAULT_GROUP_RING_TIME",
    "DEFAULT_RING_TIME",
    "FIELD_NAMES",
    "MAX_ATTEMPTS",
    "NEXT",
    "OUTCOMES",
    "AnyCaller",
    "Caller",
    "CallerMatch",
    "DialPlan",
    "DialPlanError",
    "FromExtensions",
    "FromLines",
    "FromNumber",
    "Kind",
    "NumberPattern",
    "Outcome",
    "RingGroup",
    "RouteDecision",
    "Rule",
    "Strategy",
    "TimeCondition",
    "format_caller_match",
    "hunt_order",
    "normalise_number",
    "parse_caller_match",
    "rule_from_fields",
    "rule_to_fields",
    "rules_from_toml",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 32

Outcome = Literal["NoAnswer", "Busy", "NotFound", "Error"]
# Outcome (RoutingState values, so pypbx.pbx.states.RoutingState members work too) -> field.
OUTCOMES: dict[str, str] = {
    "NoAnswer": "on_no_answer",
    "Busy": "on_busy",
    "NotFound": "on_not_found",
    "Error": "on_error",
}


@dataclass(frozen=True)
class RouteDecision:
    """Where one attempt goes, and the chain so far.

    `number` is the dialled number after the rule's rewriting (what an outside line sends);
    `caller_id` None leaves the caller ID unchanged; `tried` lists the destinations of
    this chain's attempts, this one last; `position` is the rule's index in the plan that
    decided (how `Next` knows where to continue).
    """

    rule: Rule
    destination: str
    number: str
    caller_id: str | None
    ring_time: int
    tried: tuple[str, ...]
    position: int


class DialPlan:
    """An immutable, ordered set of rules; rules with equal `Order` keep their given order."""

    def __init__(self, rules: Iterable[Rule], *, max_attempts: int = MAX_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.rules: tuple[Rule, ...] = tuple(sorted(rules, key=lambda rule: rule.order))
        self.max_attempts = max_attempts

    def route(self, kind: Kind, caller: Caller, dialed: str, now: datetime) -> RouteDecision | None:
        """The first enabled rule of `kind` matching caller, dialled number and `now`.

        None means no rule applies: the router then tries the implicit route to an
        extension with that number (9.3 step 3) and otherwise ends the call `NotFound`.
        `now` must be timezone-aware.
        """
        _check_now(now)
        return self._match(kind, caller, dialed, now, start=0, tried=())

    def fallback(
        self,
        decision: RouteDecision,
        outcome: Outcome | str,
        caller: Caller,
        dialed: str,
        now: datetime,
    ) -> RouteDecision | None:
        """The next attempt after `decision` ended with `outcome`, or None to end the call.

        `caller` and `dialed` are those given to `route` (the original dialled number, not
        the rewritten one). See the module docstring for the mechanics.
        """
        _check_now(now)
        attribute = OUTCOMES.get(outcome)
        if attribute is None:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        if len(decision.tried) >= self.max_attempts:
            log.warning(
                "dial plan: %s after %d attempts (%s); giving up",
                outcome,
                len(decision.tried),
                " -> ".join(decision.tried),
            )
            return None
        target: str | None = getattr(decision.rule, attribute)
        if target is None:
            return None
        if target == NEXT:
            start = self._position_after(decision)
            return self._match(decision.rule.kind, caller, dialed, now, start, decision.tried)
        if target in decision.tried:
            log.info(
                "dial plan: rule %r: %s falls back to %r, already tried; ending the call",
                decision.rule.name,
                outcome,
                target,
            )
            return None
        return replace(decision, destination=target, tried=(*decision.tried, target))

    def _match(
        self,
        kind: Kind,
        caller: Caller,
        dialed: str,
        now: datetime,
        start: int,
        tried: tuple[str, ...],
    ) -> RouteDecision | None:
        for position in range(start, len(self.rules)):
            rule = self.rules[position]
            if _applies(rule, kind, caller, dialed, now):
                log.debug("dial plan: %r matched rule %d %r", dialed, rule.order, rule.name)
                return RouteDecision(
                    rule=rule,
                    destination=rule.destination,
                    number=rule.rewrite(dialed),
                    caller_id=rule.caller_id,
                    ring_time=rule.ring_time,
                    tried=(*tried, rule.destination),
                    position=position,
                )
        return None

    def _position_after(self, decision: RouteDecision) -> int:
        """Where `Next` continues; tolerates a decision made by an older plan (a reload).

        The rule is looked up at its recorded place, then anywhere; a rule that is gone
        continues after the rules whose `Order` is not above its own.
        """
        position = decision.position
        if 0 <= position < len(self.rules) and self.rules[position] == decision.rule:
            return position + 1
        if decision.rule in self.rules:
            return self.rules.index(decision.rule) + 1
        return next(
            (i for i, rule in enumerate(self.rules) if rule.order > decision.rule.order),
            len(self.rules),
        )


def _applies(rule: Rule, kind: Kind, caller: Caller, dialed: str, now: datetime) -> bool:
    return (
        rule.enabled
        and rule.kind == kind
        and rule.from_.matches(caller)
        and rule.pattern.match(dialed)
        and (rule.time_condition is None or rule.time_condition.matches(now))
    )


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
