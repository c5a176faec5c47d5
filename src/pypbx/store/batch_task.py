"""The background task behind the write-behind queues (history_writer, binding_writer).

Both queues want the same timing: the first change starts a countdown of `delay` seconds
so that the changes made meanwhile share one transaction, and a full queue or a caller that
needs the data now (a query, a shutdown) cuts the countdown short. The queue's own `write`
does the work; this only decides when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class BatchTask:
    """Runs `write()` `delay` seconds after a `kick()`, or at once after `hurry()`."""

    def __init__(self, write: Callable[[], Awaitable[None]], *, delay: float, name: str) -> None:
        self._write = write
        self._delay = delay
        self._name = name
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # something is queued
        self._hurry = asyncio.Event()  # write without waiting for the delay

    def kick(self, *, hurry: bool = False) -> None:
        """Something was queued: make sure a write follows (now, with `hurry`)."""
        if self.task is None or self.task.done():
            # Events bind to the loop that first waits on them; a new task may be on a new loop
            self._wake = asyncio.Event()
            self._hurry = asyncio.Event()
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._run(), name=self._name)
        self._wake.set()
        if hurry:
            self._hurry.set()

    def hurry(self) -> None:
        """Cut a running countdown short (nothing starts if nothing was kicked)."""
        self._hurry.set()

    async def stop(self) -> None:
        """Cancel the task (a later kick starts another); the queue's data stays queued."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._delay):
                        await self._hurry.wait()
            self._wake.clear()
            self._hurry.clear()
            await self._write()
