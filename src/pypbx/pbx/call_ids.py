"""Call ids checked against the history in bulk, not with one query per call.

A CallId is unique for the life of the database, and at 6 base62 characters a random one
can collide with an old call once the history is large. Asking the store per call cost a
read for every INVITE; this pool instead asks about many random candidates in one query
and hands out the ones the history does not have. An id leaves the pool once, so the
pool's own ids never repeat; ids handed out since the refill before the last one began are
excluded from the next one too, as their history rows may not have been written when the
store was asked. The store's unique
constraint on the call id stays the backstop (several nodes sharing one database).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Iterable

logger = logging.getLogger(__name__)

REFILL_SIZE = 1000  # candidates generated and checked per store query
LOW_WATER = 250  # a refill starts in the background when fewer ids than this are left


class CallIdPool:
    """Hands out call ids that neither the history nor a live call has."""

    def __init__(
        self,
        generate: Callable[[], str],
        taken: Callable[[Iterable[str]], Awaitable[set[str]]],
        *,
        refill_size: int = REFILL_SIZE,
        low_water: int = LOW_WATER,
    ) -> None:
        self._generate = generate
        self._taken = taken
        self._refill_size = refill_size
        self._low_water = low_water
        self._ready: list[str] = []
        # ids handed out since the last refill began, and during the refill before it
        self._issued: set[str] = set()
        self._issued_before: set[str] = set()
        self._refill: asyncio.Task[None] | None = None

    async def take(self, live: Container[str]) -> str:
        """A fresh id; `live` holds the ids of calls in progress (not yet in the history)."""
        while True:
            if not self._ready:
                await self._refilled()
            # An empty pool now means the store could not be asked: unchecked, as before.
            candidate = self._ready.pop() if self._ready else self._generate()
            if candidate in live or candidate in self._issued or candidate in self._issued_before:
                continue
            self._issued.add(candidate)
            if len(self._ready) < self._low_water:
                self._start_refill()
            return candidate

    async def _refilled(self) -> None:
        self._start_refill()
        assert self._refill is not None
        await asyncio.shield(self._refill)

    def _start_refill(self) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        self._issued_before, self._issued = self._issued, set()
        candidates: set[str] = set()
        while len(candidates) < self._refill_size:
            candidates.add(self._generate())
        candidates.difference_update(self._ready)
        try:
            taken = await self._taken(candidates)
        except Exception:
            logger.exception("call id lookup failed")
            return
        # ids handed out before and while asking may not be in the history yet: not those
        fresh = candidates - taken - self._issued_before - self._issued
        self._ready.extend(fresh)
