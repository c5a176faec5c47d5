"""Digest authentication of phones' requests against the extension store.

Unknown names, disabled extensions and wrong passwords all take the same path and get the
same answer, so REGISTER/INVITE responses never reveal which extensions exist.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pypbx.pbx.abuse import FailureBans
from pypbx.pbx.replies import reply
from pypbx.sip.digest import (
    DigestCredentials,
    DigestError,
    DigestVerifier,
    compute_ha1,
    parse_credentials,
)
from pypbx.sip.message import Request, Response
from pypbx.store.records import ExtensionRecord
from pypbx.store.store import Store

log = logging.getLogger(__name__)

HA1_CACHE_SIZE = 10_000  # past this many, forgotten at once


@dataclass(slots=True)
class AuthResult:
    """Either the authenticated extension or the response that answers the request."""

    extension: ExtensionRecord | None
    response: Response | None


class SipAuthenticator:
    def __init__(self, realm: str, verifier: DigestVerifier, store: Store) -> None:
        self.realm = realm
        self.verifier = verifier
        self.store = store
        self.bans = FailureBans()  # replaced by the service with the configured limits
        # HA1 of extensions stored with a plain password, by (name, password, algorithm):
        # a changed name or password is another key, so a change needs no invalidation.
        self._ha1_cache: dict[tuple[str, str, str], str] = {}

    async def authenticate(self, request: Request, *, proxy: bool) -> AuthResult:
        """Check the request's credentials; `proxy` selects 407/Proxy-* over 401/WWW-*."""
        creds = self._credentials(request)
        if creds is None:
            return AuthResult(None, self._challenge(request, proxy=proxy, stale=False))
        extension = await self.store.find_extension_by_auth_name(creds.username)
        return self._check(request, creds, extension, proxy=proxy)

    def authenticate_cached(self, request: Request, *, proxy: bool) -> AuthResult | None:
        """`authenticate` without awaiting, or None when the extension is not in the store's
        cache (then `authenticate` must do it). The extension returned is the cache's own
        record: read it only. Why: nearly every REGISTER is answered from memory, and one
        that needs no await needs no task either.
        """
        creds = self._credentials(request)
        if creds is None:
            return AuthResult(None, self._challenge(request, proxy=proxy, stale=False))
        known, extension = self.store.cached_extension_by_auth_name(creds.username)
        if not known:
            return None
        return self._check(request, creds, extension, proxy=proxy)

    def _check(
        self,
        request: Request,
        creds: DigestCredentials,
        extension: ExtensionRecord | None,
        *,
        proxy: bool,
    ) -> AuthResult:
        """The digest check proper, the same path for unknown, disabled and known names."""
        if extension is not None and not extension.enabled:
            extension = None
        ha1 = self._ha1(extension, creds.algorithm) if extension is not None else None
        outcome = self.verifier.verify(creds, request.method, ha1, time.time(), body=request.body)
        via = request.top_via
        source = via.received or via.host
        if outcome == "ok" and extension is not None:
            self.bans.succeeded(source)
            return AuthResult(extension, None)
        if outcome == "stale":
            return AuthResult(None, self._challenge(request, proxy=proxy, stale=True))
        log.warning(
            "authentication failed for %r from %s (%s)", creds.username, source, request.method
        )
        self.bans.failed(source, time.monotonic())
        return AuthResult(None, reply(request, 403, "Forbidden"))

    def _credentials(self, request: Request) -> DigestCredentials | None:
        headers = request.headers
        for header in ("Proxy-Authorization", "Authorization"):
            if header not in headers:  # an index lookup; most requests carry neither
                continue
            for value in headers.get_all(header):
                try:
                    creds = parse_credentials(value)
                except DigestError:
                    continue
                if creds.realm == self.realm:
                    return creds
        return None

    def _ha1(self, extension: ExtensionRecord, algorithm: str) -> str | None:
        algo = algorithm.upper().removesuffix("-SESS")
        stored = extension.ha1_sha256 if algo == "SHA-256" else extension.ha1_md5
        if stored:
            return stored
        if extension.password is not None:
            name = extension.authorization_name or extension.username or extension.id
            key = (name, extension.password, algo)
            ha1 = self._ha1_cache.get(key)
            if ha1 is None:
                if len(self._ha1_cache) >= HA1_CACHE_SIZE:
                    self._ha1_cache.clear()
                ha1 = self._ha1_cache[key] = compute_ha1(name, self.realm, extension.password, algo)
            return ha1
        return None

    def _challenge(self, request: Request, *, proxy: bool, stale: bool) -> Response:
        status = 407 if proxy else 401
        response = reply(request, status)
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.verifier.challenges(time.time(), stale=stale):
            response.headers.add(header, value)
        return response
