"""pypbx.store: what must survive a restart (extensions, users, bindings, call history).

SQLite by default, PostgreSQL by URL, through the same code; the schema is migrated by
Alembic when the store opens.
"""

from pypbx.store.records import (
    AlreadyExistsError,
    BindingRecord,
    CallHistoryRecord,
    ExtensionRecord,
    HistoryQuery,
    NotFoundError,
    OfficeUserRecord,
)
from pypbx.store.store import Store

__all__ = [
    "AlreadyExistsError",
    "BindingRecord",
    "CallHistoryRecord",
    "ExtensionRecord",
    "HistoryQuery",
    "NotFoundError",
    "OfficeUserRecord",
    "Store",
]
