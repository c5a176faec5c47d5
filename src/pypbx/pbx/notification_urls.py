"""The global notification URLs in force (spec 3): CallChanged and RoutingInterception.

The TOML `[http_api]` values are the defaults; an `HttpApi` configuration stored over the
API (AddConfig/ModifyConfig) replaces both while it exists, so an application can point
the PBX at itself without a restart or file access. A stored configuration that is
disabled turns both notifications off; removing it brings the TOML values back. The
values are cached because they are read on every call state change, and reloaded when
the configuration changes.
"""

from __future__ import annotations

import logging

from pypbx.store.records import HTTP_API_SETTINGS_ID
from pypbx.store.store import Store

logger = logging.getLogger(__name__)


class NotificationUrls:
    def __init__(
        self,
        store: Store,
        *,
        call_changed: str | None = None,
        route_interception: str | None = None,
    ) -> None:
        self._store = store
        self._defaults = (call_changed or None, route_interception or None)
        self._call_changed, self._route_interception = self._defaults

    def call_changed(self) -> str | None:
        return self._call_changed

    def route_interception(self) -> str | None:
        return self._route_interception

    async def reload(self) -> None:
        """Read the stored configuration again (at start and after it changed)."""
        record = await self._store.get_extension(HTTP_API_SETTINGS_ID)
        if record is None:
            self._call_changed, self._route_interception = self._defaults
        elif not record.enabled:
            self._call_changed = self._route_interception = None
        else:
            self._call_changed = _url(record.settings.get("call_changed_url"))
            self._route_interception = _url(record.settings.get("route_interception_url"))
        logger.info(
            "notification URLs: CallChanged %s, RoutingInterception %s",
            self._call_changed or "off",
            self._route_interception or "off",
        )


def _url(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
