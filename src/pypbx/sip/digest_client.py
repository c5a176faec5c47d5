"""Answering Digest challenges to our own requests (RFC 3261 §22.2-22.3, RFC 7616), sans-I/O.

Used wherever pypbx is the client of a server that authenticates: registering to a VoIP
provider, and INVITEs (and in-dialog requests) sent out through an outside line.

Why the decision to retry looks only at the request and the response: a client that keeps
answering challenges can loop forever against a server that rejects its password, so the rule
that stops it must not depend on remembered state getting out of step. The credentials a
request already carries say everything needed: the same nonce challenged again, or a fresh
answer (nc 1) refused without ``stale=true``, means the password is wrong. ``DigestClient``
adds the two things that do need memory: a bound on rounds, and the last challenge, reused
with an increasing nonce count so that refreshes need no extra round trip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pypbx.sip.digest import (
    Challenge,
    DigestError,
    build_authorization,
    parse_credentials,
    select_challenge,
)
from pypbx.sip.message import Request, Response, generate_branch

__all__ = [
    "DigestClient",
    "UserCredentials",
    "answer_challenge",
    "answer_header_name",
    "challenge_header_name",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserCredentials:
    """What we authenticate with: the authorization name (not always the SIP user) and secret."""

    username: str
    password: str = field(repr=False)


def challenge_header_name(status: int) -> str:
    """Where a 401 (a registrar or UAS) or a 407 (a proxy) puts its challenges."""
    return "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"


def answer_header_name(status: int) -> str:
    """Where the answer to a 401 or 407 challenge goes."""
    return "Authorization" if status == 401 else "Proxy-Authorization"


@dataclass(frozen=True, slots=True)
class _Answer:
    request: Request
    challenge: Challenge
    header: str


def _previous_nonce_and_nc(request: Request, header: str, realm: str) -> tuple[str, int] | None:
    """The nonce and nonce count this request already answered ``realm`` with, if any."""
    for value in request.headers.get_all(header):
        try:
            creds = parse_credentials(value)
        except DigestError:
            continue
        if creds.realm == realm:
            return creds.nonce, int(creds.nc, 16) if creds.nc is not None else 1
    return None


def _with_credentials(request: Request, header: str, realm: str, value: str) -> None:
    """Set our answer for ``realm``, keeping answers to other realms (other proxies, §22.3)."""
    kept = []
    for existing in request.headers.get_all(header):
        try:
            same_realm = parse_credentials(existing).realm == realm
        except DigestError:
            same_realm = False
        if not same_realm:
            kept.append(existing)
    request.headers.replace_all(header, [*kept, value])


def _answer(
    request: Request,
    response: Response,
    credentials: UserCredentials,
    *,
    nc: int,
    cnonce: str | None,
    branch: str | None,
) -> _Answer | str:
    """The retry, or why there must be none."""
    status = response.status
    if status not in (401, 407):
        return f"{status} is not a challenge"
    challenge = select_challenge(response.headers.get_all(challenge_header_name(status)))
    if challenge is None:
        return f"no supported Digest challenge in the {status}"
    header = answer_header_name(status)
    previous = _previous_nonce_and_nc(request, header, challenge.realm)
    if previous is not None:
        nonce, previous_nc = previous
        if nonce == challenge.nonce:
            return f"credentials rejected ({status} with the same nonce)"
        # A reused nonce (nc > 1) may simply have expired; a fresh answer refused is final.
        if previous_nc <= 1 and not challenge.stale:
            return f"credentials rejected ({status})"
    try:
        value = build_authorization(
            challenge.raw,
            username=credentials.username,
            password=credentials.password,
            method=request.method,
            uri=str(request.uri),
            nc=nc,
            cnonce=cnonce,
            body=request.body,
        )
    except DigestError as exc:
        return f"cannot answer the challenge: {exc}"
    retry = request.copy()
    via = request.top_via.copy()
    via.params["branch"] = branch or generate_branch()
    retry.top_via = via
    number, method = request.cseq
    retry.cseq = (number + 1, method)
    _with_credentials(retry, header, challenge.realm, value)
    return _Answer(retry, challenge, header)


def answer_challenge(
    request: Request,
    response: Response,
    credentials: UserCredentials,
    *,
    cnonce: str | None = None,
    branch: str | None = None,
) -> Request | None:
    """The request to resend after a 401/407, or None when retrying would be pointless.

    The retry keeps Call-ID, From (tag included), To and body, takes CSeq + 1 and a new Via
    branch (it is a new transaction, §8.1.3.5), and carries Authorization (401) or
    Proxy-Authorization (407) for the strongest supported challenge. None when: the response
    is no challenge, no challenge is usable, or the request already answered this realm and
    the server refused it (same nonce, or a fresh answer refused without ``stale=true``).
    ``cnonce`` and ``branch`` are for reproducible tests; by default they are random.
    """
    result = _answer(request, response, credentials, nc=1, cnonce=cnonce, branch=branch)
    return result.request if isinstance(result, _Answer) else None


@dataclass(slots=True)
class _Cached:
    challenge: Challenge
    header: str
    nc: int


class DigestClient:
    """Challenge answering for the requests of one peer: a registration, or one call's dialog.

    Call :meth:`prepare` on every new request (not on retries): it restarts the round count
    and, when the last challenge offered qop, answers it in advance with the next nonce
    count. Call :meth:`retry` with each 401/407; None means stop, and :attr:`refusal` says why.
    """

    def __init__(self, credentials: UserCredentials, *, max_rounds: int = 3) -> None:
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.credentials = credentials
        self.max_rounds = max_rounds
        self.refusal: str | None = None
        self._rounds = 0
        self._cached: _Cached | None = None

    def prepare(self, request: Request) -> None:
        self._rounds = 0
        self.refusal = None
        cached = self._cached
        # Without qop there is no nonce count, so a reused answer would be a plain replay.
        if cached is None or not cached.challenge.qop:
            return
        cached.nc += 1
        try:
            value = build_authorization(
                cached.challenge.raw,
                username=self.credentials.username,
                password=self.credentials.password,
                method=request.method,
                uri=str(request.uri),
                nc=cached.nc,
                body=request.body,
            )
        except DigestError:
            self._cached = None
            return
        _with_credentials(request, cached.header, cached.challenge.realm, value)

    def retry(self, request: Request, response: Response) -> Request | None:
        if self._rounds >= self.max_rounds:
            self._refuse(f"still challenged after {self._rounds} answers")
            return None
        result = _answer(request, response, self.credentials, nc=1, cnonce=None, branch=None)
        if isinstance(result, str):
            self._refuse(result)
            return None
        self._rounds += 1
        self._cached = _Cached(result.challenge, result.header, 1)
        return result.request

    def forget(self) -> None:
        """Drop the remembered challenge (new credentials, or a different server)."""
        self._cached = None

    def _refuse(self, reason: str) -> None:
        self.refusal = reason
        self._cached = None
        log.debug("not answering challenge: %s", reason)
