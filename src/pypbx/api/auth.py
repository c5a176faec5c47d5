"""Office-user authentication for API requests (spec 5.3-5.5).

Password hashes are deliberately slow (scrypt), and O10 clients send credentials with
every request, so a successful verification is remembered for a minute. The cache key is
an HMAC of the credentials under a per-process random key (plain passwords are never
kept), and the cached value is the password hash that was verified: a changed password no
longer matches it, so the cache needs no explicit invalidation. The user (password hash
and flags) is always re-read from the store, so a removed user is refused at once.

Failed logins are counted per client address (`FailureBans`); a banned address gets 305
for every login, the right password included, exactly as for a wrong one and after about
as long as a verification takes (spent asleep, not hashing), so a guesser learns nothing
from the answer or its timing. A success does not clear the count: a guesser who knows
one account must not launder guesses at others with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import BasicAuth

from pypbx.api.context import ApiStore
from pypbx.api.params import Params
from pypbx.api.status import ApiError, Status
from pypbx.pbx.abuse import FailureBans
from pypbx.store.passwords import hash_password, verify_password
from pypbx.store.records import OfficeUserRecord

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 1024
DEFAULT_CACHE_TTL = 60.0  # seconds a successful verification is trusted


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # keep passwords out of tracebacks and debug output
        return f"Credentials(username={self.username!r}, password='***')"


def extract_credentials(params: Params, authorization: str | None) -> Credentials | None:
    """`Username`/`Password` parameters, else HTTP Basic (a pypbx extension, spec 5.5)."""
    username = params.get("Username")
    password = params.get("Password")
    if username is not None and password is not None:
        return Credentials(username, password)
    if authorization:
        try:
            basic = BasicAuth.decode(authorization, encoding="utf-8")
        except ValueError:
            return None
        if basic.login.strip() and basic.password.strip():
            return Credentials(basic.login, basic.password)
    return None


class Authenticator:
    """Checks credentials against the store's office users, caching successes."""

    def __init__(
        self,
        store: ApiStore,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._key = secrets.token_bytes(32)
        # HMAC of the credentials -> (the password hash verified, when that stops counting)
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._dummy_hash: str | None = None
        self.bans = FailureBans()  # replaced by the app with the configured limits
        self._verify_seconds = 0.05  # running average: how long a banned answer waits

    def _cache_key(self, credentials: Credentials) -> bytes:
        user = credentials.username.encode("utf-8")
        message = len(user).to_bytes(4, "big") + user + credentials.password.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def _verify(self, password: str, password_hash: str) -> bool:
        loop = asyncio.get_running_loop()
        start = loop.time()
        ok = await loop.run_in_executor(None, verify_password, password, password_hash)
        self._verify_seconds += (loop.time() - start - self._verify_seconds) / 8
        return ok

    async def _burn_time(self, password: str) -> None:
        """Spend a verification on unknown users too, so timing does not reveal names."""
        loop = asyncio.get_running_loop()
        if self._dummy_hash is None:
            self._dummy_hash = await loop.run_in_executor(
                None, hash_password, secrets.token_urlsafe(16)
            )
        await self._verify(password, self._dummy_hash)

    async def authenticate(
        self, credentials: Credentials | None, address: str | None = None
    ) -> OfficeUserRecord:
        """The user, or ApiError 304 (no credentials) / 305 (bad, or `address` banned) /
        306 (not allowed)."""
        if credentials is None:
            raise ApiError(Status.AUTHENTICATION_REQUIRED)
        if address is not None and self.bans.banned(address, time.monotonic()):
            await asyncio.sleep(self._verify_seconds)
            logger.debug("API login from banned address %s refused", address)
            raise ApiError(Status.AUTHENTICATION_FAILED)
        try:
            return await self._check(credentials)
        except ApiError as exc:
            if address is not None and exc.status == Status.AUTHENTICATION_FAILED:
                self.bans.failed(address, time.monotonic())
            raise

    async def _check(self, credentials: Credentials) -> OfficeUserRecord:
        user = await self._store.get_user(credentials.username)
        if user is None:
            await self._burn_time(credentials.password)
            logger.info("API login failed: unknown user %r", credentials.username)
            raise ApiError(Status.AUTHENTICATION_FAILED)
        key = self._cache_key(credentials)
        cached = self._verified.get(key)
        if cached is None or cached[0] != user.password_hash or cached[1] <= self._clock():
            if not await self._verify(credentials.password, user.password_hash):
                self._verified.pop(key, None)
                logger.info("API login failed: bad password for %r", credentials.username)
                raise ApiError(Status.AUTHENTICATION_FAILED)
            self._remember(key, user.password_hash)
        else:
            self._verified.move_to_end(key)
        if not user.may_use_api:
            raise ApiError(Status.FORBIDDEN_USER)
        return user

    def _remember(self, key: bytes, password_hash: str) -> None:
        self._verified[key] = (password_hash, self._clock() + self._cache_ttl)
        self._verified.move_to_end(key)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)

    def clear_cache(self) -> None:
        """Forget every remembered verification (e.g. after bulk user changes)."""
        self._verified.clear()
