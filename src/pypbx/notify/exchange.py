"""One HTTP attempt of one notification, with every failure turned into a value.

Why a separate module: the retry, ordering and logging policy (client.py) must not care how aiohttp
reports a refused connection versus a slow server; here each way an exchange can end becomes a
`NotificationReply` plus one decision, whether trying again could help.

Redirects (spec 2.2): followed up to `max_redirects` hops with aiohttp's browser behaviour, chosen
because it is what the PHP applications Ozeki's examples target are written against: 307 and 308
repeat the POST with the same body; 301, 302 and 303 continue with a GET without a body (the
post/redirect/get pattern). Basic-auth credentials are not sent to a different origin.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
from aiohttp import BytesPayload

from pypbx.notify.reply import NotificationReply, failed
from pypbx.notify.settings import NotifySettings
from pypbx.notify.wire import FORM_CONTENT_TYPE, SKIPPED_AUTO_HEADERS, Target

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reply and whether a report that got it should be tried again (spec 2.3)."""

    reply: NotificationReply
    retryable: bool


def new_session(settings: NotifySettings) -> aiohttp.ClientSession:
    """A session for notifications only: no cookies, no proxy/netrc from the environment."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_in_flight),
        timeout=aiohttp.ClientTimeout(total=settings.timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def exchange(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    settings: NotifySettings,
) -> Attempt:
    """POST `body` to `target` once; never raises except for cancellation."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    def elapsed() -> float:
        return loop.time() - started

    try:
        async with (
            asyncio.timeout(settings.timeout),
            session.post(
                target.url,
                data=BytesPayload(body, content_type=FORM_CONTENT_TYPE),
                headers=_with_authorization(headers, target),
                allow_redirects=settings.max_redirects > 0,
                # aiohttp fails when the hop count reaches its limit; ours is hops followed.
                max_redirects=settings.max_redirects + 1,
                skip_auto_headers=SKIPPED_AUTO_HEADERS,
            ) as response,
        ):
            status = response.status
            raw = await _read_capped(response, settings.max_reply_bytes)
            text = "" if raw is None else _decode(raw, response.charset)
    except TimeoutError:
        return Attempt(failed(f"timeout after {settings.timeout:g} s", elapsed=elapsed()), True)
    except aiohttp.TooManyRedirects:
        error = f"more than {settings.max_redirects} redirects"
        return Attempt(failed(error, elapsed=elapsed()), False)
    except (aiohttp.InvalidUrlRedirectClientError, aiohttp.NonHttpUrlRedirectClientError) as exc:
        return Attempt(failed(f"bad redirect: {exc}", elapsed=elapsed()), False)
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        return Attempt(failed(f"invalid URL: {exc}", elapsed=elapsed()), False)
    except aiohttp.ClientError as exc:
        error = f"connection failed: {exc or type(exc).__name__}"
        return Attempt(failed(error, elapsed=elapsed()), True)
    except ValueError as exc:  # aiohttp refusing a combination, e.g. a redirect with userinfo
        return Attempt(failed(f"request refused: {exc}", elapsed=elapsed()), False)
    if raw is None:
        error = f"reply larger than {settings.max_reply_bytes} bytes"
        return Attempt(failed(error, status=status, elapsed=elapsed()), False)
    if 200 <= status < 300:
        reply = NotificationReply(ok=True, status=status, body=text, error=None, elapsed=elapsed())
        return Attempt(reply, False)
    reply = failed(_status_error(status), status=status, body=text, elapsed=elapsed())
    return Attempt(reply, status >= 500)


def _with_authorization(headers: dict[str, str], target: Target) -> dict[str, str]:
    if target.authorization is None:
        return headers
    return {**headers, "Authorization": target.authorization}


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed `limit` bytes."""
    length = response.content_length
    if length is not None and length > limit:
        return None
    data = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


def _decode(raw: bytes, charset: str | None) -> str:
    """Text by the declared charset, else UTF-8; undecodable bytes become U+FFFD, never an error."""
    if charset:
        try:
            return raw.decode(charset, errors="replace")
        except LookupError:  # unknown, or not a text encoding (e.g. "base64")
            pass
    return raw.decode("utf-8", errors="replace")


def _status_error(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"
