"""Ringing groups (spec notifications 8.3, 10.4): one number, several extensions.

Only the data and the pure choice of whom to ring live here; ringing itself belongs to the
call machinery. Intended semantics, for the code that rings:

* `RingAll`: every available member rings at once for `ring_time`; the first to answer
  takes the call and the others stop.
* `Hunt`: available members ring one after another in `members` order, each for
  `ring_time` (splitting one budget among members would give a large group seconds each).
* When nobody answers (or nobody is available) the group attempt ends `NoAnswer` and the
  routing rule's `OnNoAnswer` applies; the group's own `fallback` is for when no rule
  says otherwise (a group reached without a rule, or a rule with an empty `OnNoAnswer`).
* The call's `Destination` becomes the member that answered.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum

from pypbx.pbx.dialplan_patterns import DialPlanError
from pypbx.pbx.dialplan_rules import MAX_RING_TIME

__all__ = ["DEFAULT_GROUP_RING_TIME", "RingGroup", "Strategy", "hunt_order"]

DEFAULT_GROUP_RING_TIME = 30


class Strategy(StrEnum):
    RING_ALL = "RingAll"
    HUNT = "Hunt"

    @classmethod
    def parse(cls, text: str) -> Strategy:
        folded = text.strip().casefold()
        for strategy in cls:
            if strategy.value.casefold() == folded:
                return strategy
        raise DialPlanError(f"strategy must be RingAll or Hunt, got {text!r}")


@dataclass(frozen=True, kw_only=True)
class RingGroup:
    """A group number and the extensions it rings, in hunt order."""

    id: str
    members: tuple[str, ...]
    ring_time: int = DEFAULT_GROUP_RING_TIME
    strategy: Strategy = Strategy.RING_ALL
    fallback: str | None = None

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise DialPlanError("ring group: id must not be empty")
        where = f"ring group {self.id!r}"
        if not self.members:
            raise DialPlanError(f"{where}: needs at least one member")
        if not all(member.strip() for member in self.members):
            raise DialPlanError(f"{where}: empty member")
        if len(set(self.members)) != len(self.members):
            raise DialPlanError(f"{where}: a member is listed twice")
        if self.id in self.members:
            raise DialPlanError(f"{where}: cannot be a member of itself")
        if not 1 <= self.ring_time <= MAX_RING_TIME:
            raise DialPlanError(
                f"{where}: ring time must be between 1 and {MAX_RING_TIME} seconds, "
                f"got {self.ring_time}"
            )
        if self.fallback is not None and not self.fallback.strip():
            raise DialPlanError(f"{where}: fallback must be None or a destination")


def hunt_order(group: RingGroup, available: Set[str]) -> list[str]:
    """The members to ring, in order: those in `available` (registered and not busy).

    For `RingAll` they ring together, for `Hunt` one after another (10.4: busy and
    unregistered members are skipped). An empty list means nobody can ring: the attempt
    ends at once, `Busy` if some member is busy, else `NotFound` (the caller knows which).
    """
    return [member for member in group.members if member in available]
