"""GetCallHistory filters as SQL conditions (spec section 8.13).

Enumerated filters (Direction, State, Type) compare case-insensitively and exactly; numbers
and ids compare exactly; General is a case-insensitive substring over the text columns a
user would search. `%` and `_` in user input are matched literally.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_

from pypbx.store.records import HistoryQuery
from pypbx.store.rows import to_db_time
from pypbx.store.schema import call_history

# Ozeki's own documentation filters with `CallerHangUp` while its results say `CallerHungUp`.
_STATE_ALIASES = {
    "callerhangup": "callerhungup",
    "calleehangup": "calleehungup",
}

_GENERAL_COLUMNS = ("source", "destination", "dialed", "caller_id", "call_id")


def normalized_state(state: str) -> str:
    """The lower-case state a filter value stands for, aliases resolved."""
    lowered = state.lower()
    return _STATE_ALIASES.get(lowered, lowered)


def history_conditions(q: HistoryQuery) -> list[ColumnElement[bool]]:
    """One condition per filter that is set; the caller ANDs them."""
    c = call_history.c
    conditions: list[ColumnElement[bool]] = []
    if q.from_time is not None:
        conditions.append(c.start_time >= to_db_time(q.from_time, "from_time"))
    if q.to_time is not None:
        conditions.append(c.start_time < to_db_time(q.to_time, "to_time"))
    if q.general is not None:
        conditions.append(
            or_(*(c[name].icontains(q.general, autoescape=True) for name in _GENERAL_COLUMNS))
        )
    if q.direction is not None:
        conditions.append(func.lower(c.direction) == q.direction.lower())
    if q.type is not None:
        conditions.append(func.lower(c.type) == q.type.lower())
    if q.state is not None:
        conditions.append(func.lower(c.state) == normalized_state(q.state))
    exact = {
        "source": q.source,
        "destination": q.destination,
        "dialed": q.dialed,
        "caller_id": q.caller_id,
        "call_id": q.call_id,
    }
    conditions.extend(c[name] == value for name, value in exact.items() if value is not None)
    return conditions
