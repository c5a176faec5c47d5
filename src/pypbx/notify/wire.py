"""What a notification looks like on the wire (spec 2.1), separate from sending it.

Pure functions: the form body with `NotificationName` first, the fixed headers, and the target URL
split into a credential-free URL plus HTTP basic auth (spec 2.4). Kept free of I/O so the exact
bytes can be tested without a server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from yarl import URL

from pypbx.notify.settings import NotifySettings
from pypbx.notify.signing import signature_headers

Fields = Mapping[str, str] | Sequence[tuple[str, str]]
FormPairs = tuple[tuple[str, str], ...]

NAME_FIELD = "NotificationName"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# aiohttp adds these on its own; spec 2.1 lists exactly the headers pypbx sends.
SKIPPED_AUTO_HEADERS = ("Accept", "Accept-Encoding")

# Characters that may appear in an already-encoded URL (RFC 3986), and a stray `%` that may not.
_ENCODED_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_USERINFO_PASSWORD = re.compile(r"(//[^/?#@:]*):[^/?#@]*@")


def form_pairs(name: str, fields: Fields) -> FormPairs:
    """The form fields in sending order: NotificationName first, then `fields` as given.

    A NotificationName inside `fields` is dropped: the name argument is the one applications
    switch on, and a second copy would make PHP's `$_REQUEST` pick whichever came last.
    """
    items = fields.items() if isinstance(fields, Mapping) else fields
    return ((NAME_FIELD, name), *((k, v) for k, v in items if k != NAME_FIELD))


def encode_form(pairs: FormPairs) -> bytes:
    """application/x-www-form-urlencoded, UTF-8, spaces as `+` (what Ozeki's captures show)."""
    return urlencode(pairs, encoding="utf-8").encode("ascii")


def base_headers(settings: NotifySettings) -> dict[str, str]:
    """Headers every notification carries besides Host, Content-Type and Content-Length."""
    return {
        "Cache-Control": "no-store,no-cache",
        "Pragma": "no-cache",
        "User-Agent": settings.user_agent,
    }


def request_headers(settings: NotifySettings, body: bytes, *, now: float) -> dict[str, str]:
    """All explicit headers of one attempt; signed at wall-clock `now` if a secret is set."""
    headers = base_headers(settings)
    if settings.secret is not None:
        headers.update(signature_headers(settings.secret, now, body))
    return headers


class InvalidTarget(ValueError):
    """A notification URL that cannot be sent to; the message never contains a password."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a notification goes: `url` has no credentials, so str(target) is safe to log.

    `authorization` is the Authorization header value for `user:password@` URLs (kept out of
    repr); aiohttp drops it when a redirect leaves the origin.
    """

    url: URL
    authorization: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return str(self.url)


def redact_url(raw: str) -> str:
    """`raw` with any userinfo password replaced by `***`, for logging URLs that failed to parse."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", raw)


def parse_target(raw: str) -> Target:
    """Split a configured or OzML-supplied URL into a clean URL and basic-auth credentials.

    The query string is kept byte for byte when the URL is already validly percent-encoded (spec
    2.1: applications pass their own data this way); otherwise yarl quotes what needs quoting.
    """
    encoded = _ENCODED_URL.fullmatch(raw) is not None and _BAD_PERCENT.search(raw) is None
    try:
        url = URL(raw, encoded=encoded)
        host = url.raw_host
        url.port  # noqa: B018 - an invalid port only shows up when it is read
    except (ValueError, TypeError) as exc:
        raise InvalidTarget(f"malformed URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise InvalidTarget(f"unsupported URL scheme {url.scheme!r}")
    if not host:
        raise InvalidTarget("URL has no host")
    authorization = None
    if url.user is not None or url.password is not None:
        authorization = basic_authorization(url.user or "", url.password or "")
        url = url.with_user(None)
    return Target(url=url.with_fragment(None), authorization=authorization)


def basic_authorization(user: str, password: str) -> str:
    """RFC 7617 credentials, UTF-8 (what browsers send for non-ASCII user names)."""
    if ":" in user:
        raise InvalidTarget("user name in URL contains ':'")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"
