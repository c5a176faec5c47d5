"""GetCallHistory filters as SQL conditions (spec section 8.13).

Enumerated filters (Direction, State, Type) compare case-insensitively and exactly; numbers
and ids compare exactly; General is a case-insensitive substring over the text columns a
user would search. `%` and `_` in user input are matched literally.

Every filter must stay fast over millions of rows, so each has an index to use: State the
one on lower(state), General the backend's trigram index (see schema.py). On SQLite the
FTS5 table only proposes candidates; the same LIKE as without it then decides, so the
result never depends on whether the index exists or how its tokenizer folds case.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, func, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from pypbx.store.records import HistoryQuery
from pypbx.store.rows import to_db_time
from pypbx.store.schema import (
    HISTORY_SEARCH,
    HISTORY_SEARCH_COLUMNS,
    call_history,
    call_history_search,
    call_history_search_queue,
)

# Ozeki's own documentation filters with `CallerHangUp` while its results say `CallerHungUp`.
_STATE_ALIASES = {
    "callerhangup": "callerhungup",
    "calleehangup": "calleehungup",
}

# The FTS5 trigram tokenizer indexes every run of 3 characters; a shorter string has none.
_GRAM = 3
# More trigrams narrow the candidates further but each costs a posting list to read; a few
# spread over the string are enough, the LIKE checks the rest.
_MAX_GRAMS = 6


def normalized_state(state: str) -> str:
    """The lower-case state a filter value stands for, aliases resolved."""
    lowered = state.lower()
    return _STATE_ALIASES.get(lowered, lowered)


async def has_text_index(conn: AsyncConnection) -> bool:
    """Whether this database has the SQLite FTS5 table for General (migration 0004 makes
    it only where SQLite supports it; PostgreSQL's index needs nothing from the query)."""
    if conn.dialect.name != "sqlite":
        return False
    found = await conn.scalar(
        text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": HISTORY_SEARCH},
    )
    return bool(found)


def fts_query(general: str) -> str | None:
    """The FTS5 MATCH expression whose rows include every row containing `general`
    (case-insensitively), or None if the index cannot narrow the search.

    The table stores which rows hold each trigram (detail=none, no positions), so the
    expression ANDs trigrams of the string. Non-overlapping ones, plus the last, cover
    every character with the fewest posting lists. NUL cannot travel through FTS5's
    query parser, so such a string is left to the LIKE alone.
    """
    if len(general) < _GRAM or "\x00" in general:
        return None
    starts = list(range(0, len(general) - _GRAM + 1, _GRAM))
    if starts[-1] != len(general) - _GRAM:
        starts.append(len(general) - _GRAM)
    if len(starts) > _MAX_GRAMS:
        step = (len(starts) - 1) / (_MAX_GRAMS - 1)
        starts = [starts[round(i * step)] for i in range(_MAX_GRAMS)]
    grams = dict.fromkeys(general[start : start + _GRAM] for start in starts)
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def _general(general: str, text_index: bool) -> ColumnElement[bool]:
    c = call_history.c
    like = or_(*(c[name].icontains(general, autoescape=True) for name in HISTORY_SEARCH_COLUMNS))
    match = fts_query(general) if text_index else None
    if match is None:
        return like
    # Every row is either in the FTS5 index or still queued for it (see schema.py).
    candidates = union_all(
        select(call_history_search.c.rowid).where(
            call_history_search.c[HISTORY_SEARCH].match(match)
        ),
        select(call_history_search_queue.c.id),
    )
    return and_(c.id.in_(candidates), like)


def history_conditions(q: HistoryQuery, text_index: bool = False) -> list[ColumnElement[bool]]:
    """One condition per filter that is set; the caller ANDs them.

    `text_index`: the database has the SQLite FTS5 table (see `has_text_index`).
    """
    c = call_history.c
    conditions: list[ColumnElement[bool]] = []
    if q.from_time is not None:
        conditions.append(c.start_time >= to_db_time(q.from_time, "from_time"))
    if q.to_time is not None:
        conditions.append(c.start_time < to_db_time(q.to_time, "to_time"))
    if q.general is not None:
        conditions.append(_general(q.general, text_index))
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
