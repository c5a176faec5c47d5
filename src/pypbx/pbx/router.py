"""Where a dialled number leads: dial plan rules, ring groups, or an extension (spec 9.3).

The rules come from two places: `[[dialplan.rules]]` in the TOML file (fixed for the
process's life) and DialPlanRule entries managed over the API (AddConfig/ModifyConfig/
RemoveConfig). The plan is rebuilt only when the store's extensions change, so routing a
call costs no query in the steady state. A stored rule that does not parse (a hand-edited
row) is skipped with a warning rather than stopping every call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pypbx.pbx.dialplan import DialPlan, DialPlanError, Rule, rule_from_fields
from pypbx.store.records import ExtensionRecord, dial_plan_rule_fields, ring_group_settings
from pypbx.store.store import Store

__all__ = ["CallRouter", "Target"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A routable destination: an extension of type SIP, API or RingGroup (or a Line)."""

    record: ExtensionRecord
    members: tuple[str, ...] = ()  # ring group: who to ring
    hunt: bool = False  # ring group: one member after the other
    ring_time: int | None = None  # ring group's own ring time
    fallback: str | None = None  # ring group's fallback destination


class CallRouter:
    def __init__(self, store: Store, static_rules: Sequence[Rule] = ()) -> None:
        self.store = store
        self._static = tuple(static_rules)
        self._plan: DialPlan | None = None
        self._generation = -1

    async def plan(self) -> DialPlan:
        generation = self.store.extensions_generation
        if self._plan is not None and generation == self._generation:
            return self._plan
        rules = list(self._static)
        for record in await self.store.list_extensions("DialPlanRule"):
            try:
                rules.append(rule_from_fields(dial_plan_rule_fields(record)))
            except DialPlanError as exc:
                log.warning("dial plan rule %r skipped: %s", record.id, exc)
        self._plan = DialPlan(rules)
        self._generation = generation
        return self._plan

    async def target(self, destination: str) -> Target | None:
        """The enabled extension `destination` names, resolved for ringing; None if none."""
        record = await self.store.get_extension(destination)
        if record is None or not record.enabled:
            return None
        if record.type == "RingGroup":
            group = ring_group_settings(record)
            return Target(
                record,
                members=group.members,
                hunt=group.strategy == "Hunt",
                ring_time=group.ring_time,
                fallback=group.fallback,
            )
        return Target(record)
