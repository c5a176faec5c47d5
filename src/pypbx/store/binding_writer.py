"""Write-behind for registrations: many REGISTERs share one transaction.

A REGISTER used to cost two or three transactions (the binding, the extension's last
address), each a BEGIN/COMMIT round trip through the driver's thread, and that was most of
its CPU. The registrar answers from memory anyway, so the store only has to catch up: the
registrar queues each change here and one background task writes whatever has queued,
`delay` seconds after the first of it, in a single transaction. Changes to the same
binding (or the same extension's runtime info) coalesce: only the last one is written.

What a crash (kill -9) costs: at most the changes of the last `delay` seconds; the phones
concerned register again within their interval anyway. A clean stop loses nothing:
`close()` (called by `Store.close`) writes what is queued.

Order matters in one place: forgetting every binding of an extension (`drop`) discards
its queued changes and deletes under the same lock as a batch write, so a batch already
under way can never bring a dropped binding back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from pypbx.store.batch_task import BatchTask
from pypbx.store.records import BindingRecord, NotFoundError

logger = logging.getLogger(__name__)

DEFAULT_DELAY = 0.5  # seconds a queued change may wait for others to share its transaction
DEFAULT_MAX_BATCH = 1000  # changes that trigger a write at once, without waiting

Runtime = tuple[str, str]  # (last_ip, user_agent) of an extension


class RegistrationSink(Protocol):
    """Where the changes go: the Store, or a fake in tests."""

    async def write_registrations(
        self,
        saves: Sequence[BindingRecord],
        deletes: Sequence[tuple[str, str]],
        runtime: Mapping[str, Runtime],
    ) -> None:
        """Upsert `saves`, delete `deletes` (extension id, contact), set `runtime`:
        one transaction, all or nothing."""
        ...

    async def save_binding(self, b: BindingRecord) -> None: ...

    async def delete_binding(self, extension_id: str, contact: str) -> None: ...

    async def delete_bindings(self, extension_id: str) -> None: ...

    async def set_extension_runtime(
        self, ext_id: str, *, last_ip: str, user_agent: str
    ) -> None: ...


class BindingWriter:
    """Queues binding saves/deletes and runtime info; writes them in batches.

    `save`, `delete` and `runtime` never block and never fail (a change that cannot be
    written is logged). The task starts with the first change (it needs a running loop).
    """

    def __init__(
        self,
        sink: RegistrationSink,
        *,
        delay: float = DEFAULT_DELAY,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._sink = sink
        self._max_batch = max_batch
        # (extension id, contact) -> the binding to upsert, or None to delete it
        self._bindings: dict[tuple[str, str], BindingRecord | None] = {}
        self._runtime: dict[str, Runtime] = {}
        self._writing_runtime: dict[str, Runtime] = {}  # the batch under way
        self._lock = asyncio.Lock()
        self._batches = BatchTask(self._write_batch, delay=delay, name="registration-writer")

    @property
    def pending(self) -> int:
        """Changes queued and not yet being written."""
        return len(self._bindings) + len(self._runtime)

    def save(self, binding: BindingRecord) -> None:
        self._put((binding.extension_id, binding.contact), binding)

    def delete(self, extension_id: str, contact: str) -> None:
        self._put((extension_id, contact), None)

    def runtime(self, extension_id: str, last_ip: str, user_agent: str) -> None:
        """Queue where an extension last registered from."""
        self._runtime[extension_id] = (last_ip, user_agent)
        self._kick()

    def pending_runtime(self, extension_id: str) -> Runtime | None:
        """Runtime info queued or being written: readers show it before the store has it."""
        found = self._runtime.get(extension_id)
        return found if found is not None else self._writing_runtime.get(extension_id)

    def forget(self, extension_id: str) -> None:
        """Discard everything queued for an extension (it was removed, or re-created)."""
        self._runtime.pop(extension_id, None)
        self._writing_runtime.pop(extension_id, None)
        for key in [key for key in self._bindings if key[0] == extension_id]:
            del self._bindings[key]

    async def drop(self, extension_id: str) -> None:
        """Delete every binding of an extension, queued ones included."""
        for key in [key for key in self._bindings if key[0] == extension_id]:
            del self._bindings[key]
        async with self._lock:
            await self._sink.delete_bindings(extension_id)

    async def flush(self) -> None:
        """Return once everything queued before this call is written (or logged).

        That includes a batch under way, which `pending` does not count: `close` stops the
        task next, and a task cancelled in the middle of its transaction loses the batch.
        """
        while True:
            async with self._lock:  # held by a batch under way
                await self._write_queued()
            if not self.pending:
                return

    async def close(self) -> None:
        """Write everything queued, then stop the task (a later change starts it again)."""
        await self.flush()
        await self._batches.stop()

    # -- the task ------------------------------------------------------------------------

    def _put(self, key: tuple[str, str], binding: BindingRecord | None) -> None:
        self._bindings.pop(key, None)  # re-insert: dict order is the order of last change
        self._bindings[key] = binding
        self._kick()

    def _kick(self) -> None:
        self._batches.kick(hurry=self.pending >= self._max_batch)

    async def _write_batch(self) -> None:
        async with self._lock:
            await self._write_queued()

    async def _write_queued(self) -> None:
        """Write the queue as one batch; call with the lock held."""
        changes, self._bindings = self._bindings, {}
        self._writing_runtime, self._runtime = self._runtime, {}
        if not changes and not self._writing_runtime:
            return
        try:
            await self._write(changes, self._writing_runtime)
        except asyncio.CancelledError:
            # not written: queue it again, behind nothing newer
            for key, value in changes.items():
                self._bindings.setdefault(key, value)
            for ext_id, info in self._writing_runtime.items():
                self._runtime.setdefault(ext_id, info)
            raise
        finally:
            self._writing_runtime = {}

    async def _write(
        self, changes: dict[tuple[str, str], BindingRecord | None], runtime: dict[str, Runtime]
    ) -> None:
        """One transaction; if it fails (a binding of an extension removed meanwhile), each
        change on its own, so one bad change costs only itself."""
        saves = [b for b in changes.values() if b is not None]
        deletes = [key for key, b in changes.items() if b is None]
        try:
            await self._sink.write_registrations(saves, deletes, runtime)
            return
        except Exception as exc:
            logger.debug("registration batch of %d failed (%s): one by one", len(changes), exc)
        for (ext_id, contact), binding in changes.items():
            try:
                if binding is None:
                    await self._sink.delete_binding(ext_id, contact)
                else:
                    await self._sink.save_binding(binding)
            except NotFoundError:
                logger.debug("binding of removed extension %s not saved", ext_id)
            except Exception:
                logger.exception("saving the registration of %s failed", ext_id)
        for ext_id, (last_ip, user_agent) in runtime.items():
            try:
                await self._sink.set_extension_runtime(
                    ext_id, last_ip=last_ip, user_agent=user_agent
                )
            except Exception:
                logger.exception("saving where %s registered from failed", ext_id)
