"""Ringing groups (spec 8.3, 10.4): the data and the choice of members to ring."""

from __future__ import annotations

from typing import Any

import pytest

from pypbx.pbx.dialplan import DialPlanError, RingGroup, Strategy, hunt_order


def test_defaults() -> None:
    group = RingGroup(id="800", members=("812", "813", "814"))
    assert group.ring_time == 30
    assert group.strategy is Strategy.RING_ALL
    assert group.fallback is None


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({"812", "813", "814"}, ["812", "813", "814"]),
        ({"814", "812"}, ["812", "814"]),  # member order, not set order
        ({"813"}, ["813"]),
        (set(), []),
        ({"999", "813"}, ["813"]),  # non-members never ring
    ],
)
def test_hunt_order_skips_unavailable_members(available: set[str], expected: list[str]) -> None:
    for strategy in Strategy:
        group = RingGroup(id="800", members=("812", "813", "814"), strategy=strategy)
        assert hunt_order(group, available) == expected
        assert hunt_order(group, frozenset(available)) == expected


@pytest.mark.parametrize(
    ("text", "strategy"),
    [("RingAll", Strategy.RING_ALL), ("ringall", Strategy.RING_ALL), (" HUNT ", Strategy.HUNT)],
)
def test_strategy_parse(text: str, strategy: Strategy) -> None:
    assert Strategy.parse(text) is strategy


def test_strategy_parse_error() -> None:
    with pytest.raises(DialPlanError) as info:
        Strategy.parse("Random")
    assert str(info.value) == "strategy must be RingAll or Hunt, got 'Random'"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": " "}, "ring group: id must not be empty"),
        ({"members": ()}, "ring group '800': needs at least one member"),
        ({"members": ("812", "")}, "ring group '800': empty member"),
        ({"members": ("812", "812")}, "ring group '800': a member is listed twice"),
        ({"members": ("812", "800")}, "ring group '800': cannot be a member of itself"),
        (
            {"ring_time": 0},
            "ring group '800': ring time must be between 1 and 3600 seconds, got 0",
        ),
        ({"fallback": ""}, "ring group '800': fallback must be None or a destination"),
    ],
)
def test_group_errors(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"id": "800", "members": ("812", "813")} | fields
    with pytest.raises(DialPlanError) as info:
        RingGroup(**values)
    assert str(info.value) == message
