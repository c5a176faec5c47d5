"""The persistent store: everything that must survive a restart.

One class in front of SQLite (default) or PostgreSQL (shared store when scaling out), with
the same statements on both. Every method is one short transaction and every write is a
single statement, so SQLite's one-writer rule never turns into a deadlock between two
transactions that read first and write later. The work runs in the drivers' own threads
(aiosqlite) or sockets (asyncpg), never on the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from pypbx.store import rows
from pypbx.store.binding_writer import BindingWriter, Runtime
from pypbx.store.engine import make_engine, normalize_url, sqlite_file
from pypbx.store.history_filter import has_text_index, history_conditions
from pypbx.store.history_writer import HistoryWriter
from pypbx.store.migrate import upgrade_to_head
from pypbx.store.records import (
    MESSAGE_FINAL_STATES,
    MESSAGE_PENDING,
    AlreadyExistsError,
    BindingRecord,
    CallHistoryRecord,
    ExtensionRecord,
    HistoryQuery,
    MessageRecord,
    NotFoundError,
    OfficeUserRecord,
    utcnow,
)
from pypbx.store.schema import (
    bindings,
    call_history,
    extensions,
    messages,
    office_users,
    settings,
)

logger = logging.getLogger(__name__)

_NUMERIC = re.compile(r"[0-9]+")
_CLOSE_WAIT = 3.0  # seconds each write-behind queue may take to drain at close
_RELOAD_INTERVAL = 2.0  # seconds between full reloads of the extension cache
_IN_CHUNK = 500  # values per IN (...): well under every backend's bound-parameter limit


def _extension_order(ext: ExtensionRecord) -> tuple[int, int, str]:
    """Numeric ids first in numeric order (9 before 10), then the others by text."""
    if _NUMERIC.fullmatch(ext.id):
        return (0, int(ext.id), ext.id)
    return (1, 0, ext.id)


# The columns of a binding row, in the order of rows.binding_values and _sqlite_binding_row.
_BINDING_COLUMNS = (
    "extension_id",
    "contact",
    "source",
    "transport",
    "expires_at",
    "call_id",
    "cseq",
    "user_agent",
    "instance_id",
)


def _sqlite_binding_row(b: BindingRecord) -> tuple[str | int, ...]:
    """`rows.binding_values` as SQLAlchemy hands it to SQLite, without its per-row work:
    the expiry in naive UTC, written the way SQLAlchemy's SQLite DATETIME stores it
    (``YYYY-MM-DD HH:MM:SS.ffffff``, microseconds always present)."""
    expires = rows.to_db_time(b.expires_at, "expires_at").replace(tzinfo=None)
    return (
        b.extension_id,
        b.contact,
        b.source,
        b.transport,
        expires.isoformat(" ", "microseconds"),
        b.call_id,
        b.cseq,
        b.user_agent,
        b.instance_id,
    )


class Store:
    """Async access to extensions, office users, bindings, call history and settings.

    Create with `await Store.open(url)`; the constructor only wraps a ready engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._extensions = _ExtensionCache()
        self._loading: asyncio.Future[None] | None = None  # a full load under way
        self._history_text_index: bool | None = None  # see query_history
        # Calls queue their history rows here; every history read below flushes it first.
        self.history = HistoryWriter(self)
        # REGISTERs queue their bindings and runtime info here (see binding_writer).
        self.registrations = BindingWriter(self)
        self._history_upserts: dict[tuple[str, ...], sa.Insert] = {}
        self._binding_upserts: dict[tuple[str, ...], sa.Insert] = {}
        self._sqlite_upsert_sql: str | None = None  # see _sqlite_binding_upsert

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the newest schema.

        For SQLite the file's directory is created. Migrations there run on a separate
        engine (see `engine.make_engine`); an in-memory database lives in one connection,
        so it is migrated through the main engine instead.
        """
        parsed = normalize_url(url)
        path = sqlite_file(parsed)
        if path is not None:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        engine = make_engine(parsed)
        try:
            if path is None:
                await upgrade_to_head(engine)
            else:
                migration_engine = make_engine(parsed, migrating=True)
                try:
                    await upgrade_to_head(migration_engine)
                finally:
                    await migration_engine.dispose()
        except BaseException:
            await engine.dispose()
            raise
        logger.info("store opened (%s)", parsed.render_as_string(hide_password=True))
        return cls(engine)

    async def close(self) -> None:
        """Write what the write-behind queues hold, then close the connections.

        Each queue gets `_CLOSE_WAIT` seconds: a database that stopped answering must not
        keep the process from exiting (service managers kill it soon after SIGTERM anyway),
        and what is lost then is what a kill -9 would lose. A safety net only: a cancelled
        write gives up its SQLite lock at once (see `engine._roll_back_invalidated`), but a
        statement already waiting for another process's lock ends its busy_timeout first.
        """
        for name, writer in (("registration", self.registrations), ("history", self.history)):
            try:
                async with asyncio.timeout(_CLOSE_WAIT):
                    await writer.close()
            except TimeoutError:
                logger.error("the %s writer did not finish within %s s", name, _CLOSE_WAIT)
        await self._engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- helpers ------------------------------------------------------------------------

    def _upsert(self, table: sa.Table, values: dict[str, Any], keys: list[str]) -> sa.Insert:
        """INSERT ... ON CONFLICT (keys) DO UPDATE: one atomic statement on both backends."""
        updates = [name for name in values if name not in keys]
        if self._engine.dialect.name == "postgresql":
            pg_stmt = postgresql.insert(table).values(values)
            return pg_stmt.on_conflict_do_update(
                index_elements=keys, set_={name: pg_stmt.excluded[name] for name in updates}
            )
        lite_stmt = sqlite.insert(table).values(values)
        return lite_stmt.on_conflict_do_update(
            index_elements=keys, set_={name: lite_stmt.excluded[name] for name in updates}
        )

    async def _write(self, statement: sa.Executable) -> int:
        """Run one write statement in its own transaction; returns the affected row count."""
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
            return result.rowcount

    async def _read(self, statement: sa.Select[Any]) -> list[sa.RowMapping]:
        async with self._engine.connect() as conn:
            result = await conn.execute(statement)
            return list(result.mappings())

    # -- extensions ---------------------------------------------------------------------

    async def add_extension(self, ext: ExtensionRecord) -> None:
        """Insert; AlreadyExistsError if the id is taken (by an extension of any type)."""
        try:
            await self._write(sa.insert(extensions).values(rows.extension_values(ext)))
        except IntegrityError as exc:
            self._extensions.invalidate()
            raise AlreadyExistsError(f"extension {ext.id!r} already exists") from exc
        except BaseException:
            self._extensions.invalidate()
            raise
        self.registrations.forget(ext.id)  # queued for an earlier extension of that id
        await self._changed_extension(ext.id)

    async def get_extension(self, ext_id: str) -> ExtensionRecord | None:
        hit, cached = self._extensions.get(("id", ext_id))
        if hit or self._extensions.complete:
            return cached
        if await self._joined_load():
            return self._extensions.get(("id", ext_id))[1]
        stamp = self._extensions.stamp
        found = await self._read(sa.select(extensions).where(extensions.c.id == ext_id))
        record = self._with_runtime(rows.extension_from_row(found[0])) if found else None
        return self._extensions.put(("id", ext_id), record, stamp)

    async def find_extension_by_auth_name(self, name: str) -> ExtensionRecord | None:
        """The extension a SIP client authenticates as.

        Its authorization name, or its username when no authorization name is set; an
        explicit authorization name wins, and a username never overrides one. An empty
        name matches nothing (it would otherwise match every extension without one).
        """
        if not name:
            return None
        hit, cached = self._extensions.get(("auth", name))
        if hit or self._extensions.complete:
            return cached
        if await self._joined_load() or await self._load_all_extensions():
            return self._extensions.get(("auth", name))[1]
        stamp = self._extensions.stamp
        c = extensions.c
        statement = (
            sa.select(extensions, (c.authorization_name == name).label("_by_auth"))
            .where(
                sa.or_(
                    c.authorization_name == name,
                    sa.and_(c.authorization_name == "", c.username == name),
                )
            )
            .order_by(sa.desc("_by_auth"), c.id)
            .limit(1)
        )
        found = await self._read(statement)
        record = self._with_runtime(rows.extension_from_row(found[0])) if found else None
        return self._extensions.put(("auth", name), record, stamp)

    async def load_extensions(self) -> bool:
        """Fill the extension cache now (at start-up: the first registration storm after a
        restart then finds every extension in memory); False if a change raced with it."""
        self._extensions.loaded_at = float("-inf")
        return await self._load_all_extensions()

    async def _joined_load(self) -> bool:
        """Wait for a full load under way, if any; True if the cache is complete after it.

        Why: in a registration storm right after extensions were added, every REGISTER
        misses the cache until the full load ends. Each used to send a query of its own
        meanwhile, and hundreds of them queued for the pool's connections behind the load
        itself: answers took seconds (phones retransmitted) and CPU per registration rose
        by half. One query serves them all now.
        """
        loading = self._loading
        if loading is None:
            return False
        await asyncio.shield(loading)
        return self._extensions.complete

    def cached_extension_by_auth_name(self, name: str) -> tuple[bool, ExtensionRecord | None]:
        """`find_extension_by_auth_name` from memory only: (known, record); known is False
        when only the database can tell. Why: a REGISTER answered without awaiting needs no
        task of its own. The record is the cache's own, NOT a copy: read it, never change it.
        """
        if not name:
            return True, None
        cache = self._extensions
        hit, found = cache.peek(("auth", name))
        return (True, found) if hit else (cache.complete, None)

    async def _load_all_extensions(self) -> bool:
        """Fill the cache with every extension, so lookups never query; False if not now.

        After a change it is worth it only if lookups come faster than changes: a reload
        is at most once per `_RELOAD_INTERVAL` (single lookups query meanwhile), so
        adding a thousand extensions one by one never reloads the table a thousand times.
        Lookups that miss while the load is under way wait for it (`_joined_load`).
        """
        cache = self._extensions
        now = time.monotonic()
        if self._loading is not None:
            return await self._joined_load()
        if now - cache.loaded_at < _RELOAD_INTERVAL:
            return False
        cache.loaded_at = now
        loaded = asyncio.get_running_loop().create_future()
        self._loading = loaded
        try:
            generation = cache.begin_load()
            found = await self._read(sa.select(extensions))
            records = [self._with_runtime(rows.extension_from_row(row)) for row in found]
            return cache.fill(records, generation)
        finally:
            self._loading = None
            loaded.set_result(None)

    def _with_runtime(self, record: ExtensionRecord) -> ExtensionRecord:
        """The record with runtime info still queued for writing (the API shows it)."""
        queued = self.registrations.pending_runtime(record.id)
        if queued is not None:
            record.last_ip, record.user_agent = queued
        return record

    async def update_extension(self, ext: ExtensionRecord) -> None:
        """Replace the configuration of an existing extension; NotFoundError if missing.

        `last_ip`, `user_agent` and `created_at` are left as stored: they belong to the
        registrar and to creation, and a config edit built from a fresh record must not
        wipe them.
        """
        statement = (
            sa.update(extensions)
            .where(extensions.c.id == ext.id)
            .values(**rows.extension_config_values(ext), updated_at=utcnow())
        )
        try:
            changed = await self._write(statement)
        except BaseException:
            self._extensions.invalidate()
            raise
        await self._changed_extension(ext.id)
        if changed == 0:
            raise NotFoundError(f"extension {ext.id!r} does not exist")

    async def remove_extension(self, ext_id: str) -> bool:
        """Delete (its bindings go with it); False if there was no such extension."""
        self.registrations.forget(ext_id)
        try:
            removed = await self._write(sa.delete(extensions).where(extensions.c.id == ext_id))
        except BaseException:
            self._extensions.invalidate()
            raise
        await self._changed_extension(ext_id)
        return removed > 0

    async def _changed_extension(self, ext_id: str) -> None:
        """After a write to one extension: the cache forgets it at once (the change holds
        for the very next lookup), then takes its row back, read afresh, and is complete
        again. Why not start over: a full reload is allowed only every `_RELOAD_INTERVAL`,
        and until then every REGISTER of a storm would send a query of its own (seconds
        of queueing for the pool; phones retransmit).
        """
        cache = self._extensions
        token = cache.begin_change(ext_id)
        if token is None:
            return
        done = False
        try:
            found = await self._read(sa.select(extensions).where(extensions.c.id == ext_id))
            record = self._with_runtime(rows.extension_from_row(found[0])) if found else None
            cache.end_change(ext_id, record, token)
            done = True
        except Exception:
            logger.warning("re-reading extension %s failed: lookups query for now", ext_id)
        finally:
            if not done:
                cache.invalidate()

    @property
    def extensions_generation(self) -> int:
        """Moves on with every change to the extensions (callers cache what they derive)."""
        return self._extensions.generation

    async def list_extensions(self, type: str | None = None) -> list[ExtensionRecord]:
        statement = sa.select(extensions)
        if type is not None:
            statement = statement.where(extensions.c.type == type)
        found = [
            self._with_runtime(rows.extension_from_row(row)) for row in await self._read(statement)
        ]
        return sorted(found, key=_extension_order)

    async def set_extension_runtime(self, ext_id: str, *, last_ip: str, user_agent: str) -> None:
        """Record where an extension last registered from; ignored if it was just removed."""
        statement = (
            sa.update(extensions)
            .where(extensions.c.id == ext_id)
            .values(last_ip=last_ip, user_agent=user_agent)
        )
        changed = await self._write(statement)
        self._extensions.patch_runtime(ext_id, (last_ip, user_agent))
        if changed == 0:
            logger.debug("runtime info for unknown extension %r ignored", ext_id)

    def note_extension_runtime(self, ext_id: str, *, last_ip: str, user_agent: str) -> None:
        """`set_extension_runtime` written behind (see `registrations`); readers see it
        at once. Not a configuration change: cached lookups stay."""
        self.registrations.runtime(ext_id, last_ip, user_agent)
        self._extensions.patch_runtime(ext_id, (last_ip, user_agent))

    # -- office users -------------------------------------------------------------------

    async def add_user(self, user: OfficeUserRecord) -> None:
        try:
            await self._write(sa.insert(office_users).values(rows.user_values(user)))
        except IntegrityError as exc:
            raise AlreadyExistsError(f"user {user.username!r} already exists") from exc

    async def get_user(self, username: str) -> OfficeUserRecord | None:
        found = await self._read(sa.select(office_users).where(office_users.c.username == username))
        return rows.user_from_row(found[0]) if found else None

    async def update_user(self, user: OfficeUserRecord) -> None:
        """Change password hash and rights; NotFoundError if the user does not exist."""
        statement = (
            sa.update(office_users)
            .where(office_users.c.username == user.username)
            .values(
                password_hash=user.password_hash,
                may_use_api=user.may_use_api,
                is_admin=user.is_admin,
            )
        )
        if await self._write(statement) == 0:
            raise NotFoundError(f"user {user.username!r} does not exist")

    async def remove_user(self, username: str) -> bool:
        removed = await self._write(
            sa.delete(office_users).where(office_users.c.username == username)
        )
        return removed > 0

    async def list_users(self) -> list[OfficeUserRecord]:
        found = await self._read(sa.select(office_users).order_by(office_users.c.username))
        return [rows.user_from_row(row) for row in found]

    async def count_users(self) -> int:
        async with self._engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(office_users))
        return int(count or 0)

    # -- registrations ------------------------------------------------------------------

    async def save_binding(self, b: BindingRecord) -> None:
        """Insert or refresh the binding (extension_id, contact); NotFoundError if the
        extension does not exist."""
        statement = self._upsert(bindings, rows.binding_values(b), ["extension_id", "contact"])
        try:
            await self._write(statement)
        except IntegrityError as exc:
            raise NotFoundError(f"extension {b.extension_id!r} does not exist") from exc

    async def delete_binding(self, extension_id: str, contact: str) -> None:
        await self._write(
            sa.delete(bindings).where(
                bindings.c.extension_id == extension_id, bindings.c.contact == contact
            )
        )

    async def delete_bindings(self, extension_id: str) -> None:
        await self._write(sa.delete(bindings).where(bindings.c.extension_id == extension_id))

    async def list_bindings(self) -> list[BindingRecord]:
        found = await self._read(
            sa.select(bindings).order_by(bindings.c.extension_id, bindings.c.contact)
        )
        return [rows.binding_from_row(row) for row in found]

    async def write_registrations(
        self,
        saves: Sequence[BindingRecord],
        deletes: Sequence[tuple[str, str]],
        runtime: Mapping[str, Runtime],
    ) -> None:
        """Upsert `saves`, delete `deletes` ((extension id, contact) pairs) and set the
        runtime info (extension id -> (last_ip, user_agent)), in one transaction: all or
        nothing (IntegrityError if a saved binding's extension is gone). The BindingWriter's
        way of writing; one executemany per kind with statements built once."""
        b = bindings.c
        async with self._engine.begin() as conn:
            if saves:
                sqlite_upsert = self._sqlite_binding_upsert()
                if sqlite_upsert is not None:
                    await conn.exec_driver_sql(
                        sqlite_upsert, [_sqlite_binding_row(rec) for rec in saves]
                    )
                else:
                    values = [rows.binding_values(rec) for rec in saves]
                    await conn.execute(self._binding_upsert(tuple(values[0])), values)
            if deletes:
                await conn.execute(
                    sa.delete(bindings).where(
                        b.extension_id == sa.bindparam("b_ext"),
                        b.contact == sa.bindparam("b_contact"),
                    ),
                    [{"b_ext": ext, "b_contact": contact} for ext, contact in deletes],
                )
            if runtime:
                await conn.execute(
                    sa.update(extensions)
                    .where(extensions.c.id == sa.bindparam("b_id"))
                    .values(last_ip=sa.bindparam("b_ip"), user_agent=sa.bindparam("b_ua")),
                    [
                        {"b_id": ext_id, "b_ip": ip, "b_ua": ua}
                        for ext_id, (ip, ua) in runtime.items()
                    ],
                )

    def _binding_upsert(self, names: tuple[str, ...]) -> sa.Insert:
        """The parameterless upsert of a binding setting `names`, built once."""
        statement = self._binding_upserts.get(names)
        if statement is None:
            keys = ("extension_id", "contact")
            if self._engine.dialect.name == "postgresql":
                pg_stmt = postgresql.insert(bindings)
                excluded = pg_stmt.excluded
                statement = pg_stmt.on_conflict_do_update(
                    index_elements=keys, set_={n: excluded[n] for n in names if n not in keys}
                )
            else:
                lite_stmt = sqlite.insert(bindings)
                lite_excluded = lite_stmt.excluded
                statement = lite_stmt.on_conflict_do_update(
                    index_elements=keys,
                    set_={n: lite_excluded[n] for n in names if n not in keys},
                )
            self._binding_upserts[names] = statement
        return statement

    def _sqlite_binding_upsert(self) -> str | None:
        """The binding upsert as SQLite's own SQL text, or None on another backend.

        Why: a registration storm writes a binding per REGISTER, and SQLAlchemy's work per
        row (a parameter dict, two bind processors, `construct_params`) cost more main-thread
        CPU than SQLite's own upsert in the driver's thread. The text is SQLAlchemy's
        compilation of the very statement `_binding_upsert` builds, so the two ways write
        the same; the rows are `_sqlite_binding_row` tuples in its parameter order.
        """
        if self._sqlite_upsert_sql is None:
            if self._engine.dialect.name != "sqlite":
                self._sqlite_upsert_sql = ""
            else:
                statement = self._binding_upsert(_BINDING_COLUMNS)
                compiled = statement.compile(dialect=self._engine.dialect)
                if tuple(compiled.positiontup or ()) != _BINDING_COLUMNS:
                    raise RuntimeError(f"unexpected binding upsert {compiled.string!r}")
                self._sqlite_upsert_sql = compiled.string
        return self._sqlite_upsert_sql or None

    async def purge_expired_bindings(self, now: datetime) -> int:
        """Delete bindings whose expiry is at or before `now`; returns how many."""
        cutoff = rows.to_db_time(now, "now")
        return await self._write(sa.delete(bindings).where(bindings.c.expires_at <= cutoff))

    # -- call history -------------------------------------------------------------------

    async def start_history(self, rec: CallHistoryRecord) -> None:
        """Insert the row of a call that has just started (normally with state None).

        AlreadyExistsError if the call id was ever used: call ids are unique for the life
        of the database.
        """
        try:
            await self._write(sa.insert(call_history).values(rows.history_values(rec)))
        except IntegrityError as exc:
            raise AlreadyExistsError(f"call {rec.call_id!r} already in history") from exc

    async def finish_history(self, rec: CallHistoryRecord) -> None:
        """Write the final row of a call: update by call id, or insert if it never started."""
        await self._write(self._upsert(call_history, rows.history_values(rec), ["call_id"]))

    async def write_history_batch(
        self, starts: Sequence[CallHistoryRecord], finishes: Sequence[CallHistoryRecord]
    ) -> None:
        """`start_history` for each of `starts`, then `finish_history` for each of
        `finishes`, in one transaction: all rows or none (IntegrityError, say, if a started
        call id is already in the history). The HistoryWriter's way of writing.

        One executemany per kind with statements built once: building and compiling a
        statement per row was most of the cost of a history write.
        """
        start_rows = [rows.history_values(rec) for rec in starts]
        # One upsert may touch a row only once (PostgreSQL): the last end of a call wins,
        # as it would have one statement after the other.
        last_finish = {rec.call_id: rec for rec in finishes}
        finish_rows = [rows.history_values(rec) for rec in last_finish.values()]
        async with self._engine.begin() as conn:
            if start_rows:
                await conn.execute(sa.insert(call_history), start_rows)
            if finish_rows:
                await conn.execute(self._history_upsert(tuple(finish_rows[0])), finish_rows)

    def _history_upsert(self, names: tuple[str, ...]) -> sa.Insert:
        """The parameterless upsert by call id setting `names`, built once per column set."""
        statement = self._history_upserts.get(names)
        if statement is None:
            updates = [name for name in names if name != "call_id"]
            if self._engine.dialect.name == "postgresql":
                pg_stmt = postgresql.insert(call_history)
                statement = pg_stmt.on_conflict_do_update(
                    index_elements=["call_id"],
                    set_={name: pg_stmt.excluded[name] for name in updates},
                )
            else:
                lite_stmt = sqlite.insert(call_history)
                statement = lite_stmt.on_conflict_do_update(
                    index_elements=["call_id"],
                    set_={name: lite_stmt.excluded[name] for name in updates},
                )
            self._history_upserts[names] = statement
        return statement

    async def close_unfinished_history(self, state: str, end_time: datetime) -> int:
        """Mark calls left in progress by a crash as ended; returns how many.

        Run at startup, before any call is accepted. An end time already recorded is kept.
        """
        end = rows.to_db_time(end_time, "end_time")
        c = call_history.c
        statement = (
            sa.update(call_history)
            .where(c.state.is_(None))
            .values(state=state, end_time=sa.func.coalesce(c.end_time, end))
        )
        closed = await self._write(statement)
        if closed:
            logger.warning("closed %d unfinished call history rows as %s", closed, state)
        return closed

    async def query_history(self, q: HistoryQuery) -> tuple[int, list[CallHistoryRecord]]:
        """Total number of matching calls, and the requested page in ascending start time."""
        if q.page < 0:
            raise ValueError("page must be >= 0")
        if q.rows_per_page < 1:
            raise ValueError("rows_per_page must be >= 1")
        await self.history.flush()
        if self._history_text_index is None:  # the schema is fixed once the store is open
            async with self._engine.connect() as conn:
                self._history_text_index = await has_text_index(conn)
        conditions = history_conditions(q, self._history_text_index)
        count_statement = sa.select(sa.func.count()).select_from(call_history).where(*conditions)
        page_statement = (
            sa.select(call_history)
            .where(*conditions)
            .order_by(call_history.c.start_time, call_history.c.id)
            .limit(q.rows_per_page)
            .offset(q.page * q.rows_per_page)
        )
        async with self._engine.connect() as conn:
            total = await conn.scalar(count_statement)
            page = (await conn.execute(page_statement)).mappings().all()
        return int(total or 0), [rows.history_from_row(row) for row in page]

    async def call_id_exists(self, call_id: str) -> bool:
        return bool(await self.taken_call_ids([call_id]))

    async def taken_call_ids(self, call_ids: Iterable[str]) -> set[str]:
        """Those of `call_ids` already in the history (rows still queued count too)."""
        await self.history.flush()
        wanted = list(dict.fromkeys(call_ids))
        taken: set[str] = set()
        c = call_history.c
        async with self._engine.connect() as conn:
            for first in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[first : first + _IN_CHUNK]
                result = await conn.execute(sa.select(c.call_id).where(c.call_id.in_(chunk)))
                taken.update(result.scalars())
        return taken

    # -- settings -----------------------------------------------------------------------

    async def get_setting(self, key: str, default: Any = None) -> Any:
        """The stored JSON value, or `default` if the key was never set."""
        found = await self._read(sa.select(settings.c.value).where(settings.c.key == key))
        return found[0]["value"] if found else default

    async def set_setting(self, key: str, value: Any) -> None:
        """Store any JSON-serialisable value under `key` (replacing the old one)."""
        await self._write(self._upsert(settings, {"key": key, "value": value}, ["key"]))

    # -- text messages ------------------------------------------------------------------

    async def add_message(self, rec: MessageRecord) -> None:
        """Insert a message; AlreadyExistsError if its id was ever used."""
        try:
            await self._write(sa.insert(messages).values(rows.message_values(rec)))
        except IntegrityError as exc:
            raise AlreadyExistsError(f"message {rec.id!r} already exists") from exc

    async def get_message(self, message_id: str) -> MessageRecord | None:
        found = await self._read(sa.select(messages).where(messages.c.id == message_id))
        return rows.message_from_row(found[0]) if found else None

    async def pending_messages(
        self, recipient: str, now: datetime, limit: int = 100
    ) -> list[MessageRecord]:
        """Messages still waiting for `recipient` and not expired at `now`, oldest first."""
        cutoff = rows.to_db_time(now, "now")
        c = messages.c
        statement = (
            sa.select(messages)
            .where(c.recipient == recipient, c.state == MESSAGE_PENDING, c.expires_at > cutoff)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        return [rows.message_from_row(row) for row in await self._read(statement)]

    async def pending_recipients(self) -> list[str]:
        """Every extension with at least one message waiting for it."""
        c = messages.c
        statement = (
            sa.select(c.recipient)
            .where(c.state == MESSAGE_PENDING)
            .distinct()
            .order_by(c.recipient)
        )
        return [row["recipient"] for row in await self._read(statement)]

    async def note_message_attempt(self, message_id: str, reason: str) -> bool:
        """Count a failed delivery attempt of a pending message; False if it is not pending."""
        c = messages.c
        statement = (
            sa.update(messages)
            .where(c.id == message_id, c.state == MESSAGE_PENDING)
            .values(attempts=c.attempts + 1, reason=reason)
        )
        return await self._write(statement) > 0

    async def finish_message(
        self, message_id: str, state: str, when: datetime, reason: str | None = None
    ) -> bool:
        """Move a pending message to a final state; False if it was not pending (so two
        racing deliveries, or a delivery and the expiry sweep, report it only once)."""
        if state not in MESSAGE_FINAL_STATES:
            raise ValueError(f"not a final message state: {state!r}")
        c = messages.c
        values: dict[str, Any] = {"state": state, "finished_at": rows.to_db_time(when, "when")}
        if state == "delivered":
            values["attempts"] = c.attempts + 1
        if reason is not None:
            values["reason"] = reason
        statement = (
            sa.update(messages)
            .where(c.id == message_id, c.state == MESSAGE_PENDING)
            .values(**values)
        )
        return await self._write(statement) > 0

    async def set_message_remote_id(self, message_id: str, remote_id: str) -> bool:
        """Remember the SMSC's id of a message sent over SMPP; False if it is not pending."""
        c = messages.c
        statement = (
            sa.update(messages)
            .where(c.id == message_id, c.state == MESSAGE_PENDING)
            .values(remote_id=remote_id)
        )
        return await self._write(statement) > 0

    async def message_by_remote_id(self, remote_id: str) -> MessageRecord | None:
        """The message the SMSC knows as `remote_id` (a delivery receipt names only that)."""
        c = messages.c
        statement = (
            sa.select(messages).where(c.remote_id == remote_id).order_by(c.created_at).limit(1)
        )
        found = await self._read(statement)
        return rows.message_from_row(found[0]) if found else None

    async def expired_messages(self, now: datetime, limit: int = 1000) -> list[MessageRecord]:
        """Pending messages whose expiry is at or before `now`, oldest first (not changed:
        the caller moves each with `finish_message` and reports the ones it moved)."""
        cutoff = rows.to_db_time(now, "now")
        c = messages.c
        statement = (
            sa.select(messages)
            .where(c.state == MESSAGE_PENDING, c.expires_at <= cutoff)
            .order_by(c.expires_at, c.id)
            .limit(limit)
        )
        return [rows.message_from_row(row) for row in await self._read(statement)]

    async def purge_messages(self, before: datetime) -> int:
        """Delete messages that reached a final state before `before`; returns how many."""
        cutoff = rows.to_db_time(before, "before")
        c = messages.c
        statement = sa.delete(messages).where(
            c.state.in_(MESSAGE_FINAL_STATES), c.finished_at < cutoff
        )
        return await self._write(statement)


class _ExtensionCache:
    """Extension lookups kept in memory: every call and REGISTER needs one or two.

    This process is the only writer of its extensions (every change goes through this
    Store), so dropping everything on each configuration change keeps it exact; runtime
    info (where a phone registered from) is patched in place instead, since a REGISTER must
    not cost the next one its lookup. A lookup that raced with a write is not stored (the
    stamp moved on meanwhile). Callers get copies, so editing a returned record cannot
    change the cache. Usually the whole table is in (`fill`, `complete`): then a name not
    here is unknown without a query, so a flood of REGISTERs for made-up users costs no
    queries; otherwise unknown names are cached one by one, within a size bound. When
    several nodes share one database (scale-out), this cache needs their invalidation.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], ExtensionRecord | None] = {}
        self._keys: dict[str, set[tuple[str, str]]] = {}  # extension id -> its entries
        self.generation = 0  # configuration changes
        self.stamp = 0  # any change, runtime info included
        self.complete = False  # every extension is in: a miss means "no such extension"
        self.loaded_at = float("-inf")  # time.monotonic() of the last full load
        self._patched: dict[str, tuple[str, str]] | None = None  # runtime during a load
        self._clears = 0  # times emptied: a change under way must not complete a cleared cache

    def peek(self, key: tuple[str, str]) -> tuple[bool, ExtensionRecord | None]:
        """`get` without the copy: the cached record itself, to be read only."""
        entries = self._entries
        if key in entries:
            return True, entries[key]
        return False, None

    def get(self, key: tuple[str, str]) -> tuple[bool, ExtensionRecord | None]:
        if key not in self._entries:
            return False, None
        return True, _copy(self._entries[key])

    def put(
        self, key: tuple[str, str], record: ExtensionRecord | None, stamp: int
    ) -> ExtensionRecord | None:
        if stamp == self.stamp:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._clear()
            self._store(key, _copy(record))
        return record

    def begin_load(self) -> int:
        """Start reading the whole table for `fill`; returns the generation to pass it."""
        self._patched = {}
        return self.generation

    def fill(self, records: list[ExtensionRecord], generation: int) -> bool:
        """Hold exactly `records`, read since `begin_load`, plus the runtime info changed
        meanwhile; False if the configuration changed meanwhile or they are too many."""
        patched, self._patched = self._patched or {}, None
        if generation != self.generation or 2 * len(records) > self.MAX_ENTRIES:
            return False
        self._clear()
        for record in records:
            if record.id in patched:
                record.last_ip, record.user_agent = patched[record.id]
        for record in sorted(records, key=_auth_precedence):
            self._store(("id", record.id), record)
            name = record.authorization_name or record.username
            if name and ("auth", name) not in self._entries:
                self._store(("auth", name), record)
        self.complete = True
        return True

    def patch_runtime(self, ext_id: str, runtime: tuple[str, str]) -> None:
        self.stamp += 1
        if self._patched is not None:
            self._patched[ext_id] = runtime
        for key in self._keys.get(ext_id, ()):
            record = self._entries.get(key)
            if record is not None and record.id == ext_id:
                record.last_ip, record.user_agent = runtime

    def invalidate(self) -> None:
        self._clear()
        self.generation += 1
        self.stamp += 1

    def begin_change(self, ext_id: str) -> _Change | None:
        """One extension was written: forget it now; None if the cache was not complete
        (then it is simply emptied), else what `end_change` needs to complete it again."""
        self.generation += 1
        self.stamp += 1
        if not self.complete:
            self._clear()
            return None
        old = self._entries.pop(("id", ext_id), None)
        names = {_auth_key(old)} if old is not None else set()
        for name in names:
            self._entries.pop(("auth", name), None)
        self.complete = False  # lookups of its names query meanwhile
        return _Change(self.generation, self._clears, names)

    def end_change(self, ext_id: str, record: ExtensionRecord | None, change: _Change) -> None:
        """Put the extension's fresh row back (None: it is gone) and settle which record
        each of its old and new names now finds, as `fill` would; complete again unless
        another change or a clear came meanwhile (then the cache is emptied)."""
        if (
            change.generation != self.generation
            or change.clears != self._clears
            or len(self._entries) + 2 > self.MAX_ENTRIES
        ):
            self._clear()
            return
        names = set(change.names)
        if record is not None:
            self._store(("id", ext_id), record)
            names.add(_auth_key(record))
        names.discard("")
        by_id = [r for (kind, _), r in self._entries.items() if kind == "id" and r is not None]
        for name in names:
            self._entries.pop(("auth", name), None)
            candidates = [
                r
                for r in by_id
                if r.authorization_name == name or (not r.authorization_name and r.username == name)
            ]
            if candidates:
                winner = min(candidates, key=_auth_precedence)
                self._store(("auth", name), winner)
        self.complete = True

    def _store(self, key: tuple[str, str], record: ExtensionRecord | None) -> None:
        self._entries[key] = record
        if record is not None:
            self._keys.setdefault(record.id, set()).add(key)

    def _clear(self) -> None:
        self._entries.clear()
        self._keys.clear()
        self.complete = False
        self._clears += 1


@dataclasses.dataclass(frozen=True, slots=True)
class _Change:
    """A change of one extension under way (see `_ExtensionCache.begin_change`)."""

    generation: int
    clears: int
    names: set[str]


def _auth_precedence(record: ExtensionRecord) -> tuple[bool, str]:
    """Which record a name finds when several could: the ORDER BY of
    find_extension_by_auth_name (an explicit authorization name first, then the lowest id)."""
    return (record.authorization_name == "", record.id)


def _auth_key(record: ExtensionRecord) -> str:
    """The name a record is found by in `find_extension_by_auth_name` ('' for none)."""
    return record.authorization_name or record.username


def _copy(record: ExtensionRecord | None) -> ExtensionRecord | None:
    if record is None:
        return None
    settings = record.settings  # usually empty (SIP extensions): deepcopy({}) costs 5 µs
    return dataclasses.replace(record, settings=copy.deepcopy(settings) if settings else {})
