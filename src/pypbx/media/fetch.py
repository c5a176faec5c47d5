"""Turning the Play command's `AudioFile` into PCM: a file under a media root, or a URL.

The parameter comes straight from the network, so a local name is confined to the configured
media directories: no `..`, no absolute path elsewhere, no symlink pointing out (the check
runs on the fully resolved path). URLs are fetched over http(s) only, with a time limit and a
size limit enforced while the body streams in, so a slow or endless server costs at most
`timeout` seconds and `max_bytes` of memory. Decoded URL audio is kept for as long as the
server's `Cache-Control: max-age` allows, which is how Ozeki honours "the web server's
caching settings" (spec 8.9).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import aiohttp

from pypbx.media.audiofile import MAX_SECONDS, decode_audio_async, load_audio
from pypbx.media.player import Pcm

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 10.0  # spec 8.9 [REC]
MAX_DOWNLOAD = 20 * 1024 * 1024
CACHE_SAMPLES = 8000 * 1800  # half an hour of 8 kHz audio, under 30 MB
_CHUNK = 65536

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")
# schemes recognised even without `//`, so `file:/etc/passwd` is refused as a URL
_OPAQUE_SCHEMES = frozenset({"file", "data", "ftp", "ftps", "sftp", "tftp", "smb", "javascript"})


class AudioRequestError(ValueError):
    """The `AudioFile` names nothing we may or can play (API status 302)."""


class AudioResolver:
    """Loads `AudioFile` values; owns one HTTP session, so call `close()` at shutdown."""

    def __init__(
        self,
        media_dirs: Sequence[str | os.PathLike[str]],
        *,
        timeout: float = DOWNLOAD_TIMEOUT,
        max_bytes: int = MAX_DOWNLOAD,
        max_seconds: float = MAX_SECONDS,
        cache_samples: int = CACHE_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._roots = [Path(d).resolve() for d in media_dirs]
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_seconds = max_seconds
        self._cache = _UrlCache(cache_samples, clock)
        self._session: aiohttp.ClientSession | None = None

    @property
    def media_dirs(self) -> list[Path]:
        return list(self._roots)

    async def load(self, audio_file: str) -> Pcm:
        """The audio as 8 kHz int16 PCM.

        Raises AudioRequestError (bad name, not found, download failed) or AudioFormatError
        (not WAV/MP3, too long); both are ValueErrors carrying a message fit for the client.
        """
        scheme = _url_scheme(audio_file)
        if scheme is None:
            return await asyncio.to_thread(self._load_file, audio_file)
        if scheme not in ("http", "https"):
            raise AudioRequestError(
                f"AudioFile URL scheme {scheme!r} is not supported (only http and https)"
            )
        return await self.download(audio_file.strip())

    def resolve_path(self, audio_file: str) -> Path:
        """The media file a local `AudioFile` names, after every confinement check."""
        if not audio_file.strip():
            raise AudioRequestError("AudioFile is empty")
        if "\x00" in audio_file:
            raise AudioRequestError("AudioFile contains a NUL byte")
        # Ozeki clients run on Windows and may write prompts\hello.wav
        path = PurePosixPath(audio_file.replace("\\", "/"))
        if ".." in path.parts:
            raise AudioRequestError(f"AudioFile {audio_file!r} must not contain '..'")
        if path.is_absolute():
            target = self._resolve(Path(path), audio_file)
            if not any(target.is_relative_to(root) for root in self._roots):
                raise AudioRequestError(f"AudioFile {audio_file!r} is outside the media directory")
            return self._check_file(target, audio_file)
        if not self._roots:
            raise AudioRequestError("no media directory is configured for relative AudioFile paths")
        for root in self._roots:
            target = self._resolve(root / path, audio_file)
            if not target.is_relative_to(root):
                raise AudioRequestError(
                    f"AudioFile {audio_file!r} leads outside the media directory"
                )
            if target.exists():
                return self._check_file(target, audio_file)
        raise AudioRequestError(f"audio file {audio_file!r} not found")

    async def download(self, url: str) -> Pcm:
        """Audio from an http(s) URL, from the cache while the server's max-age allows."""
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        body, cache_control = await self._fetch(url)
        pcm = await decode_audio_async(body, name_hint=url, max_seconds=self._max_seconds)
        pcm.flags.writeable = False  # shared by every call that plays it
        max_age = cache_max_age(cache_control)
        if max_age:
            self._cache.put(url, pcm, max_age)
        return pcm

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _load_file(self, audio_file: str) -> Pcm:
        path = self.resolve_path(audio_file)
        try:
            return load_audio(path, name_hint=audio_file, max_seconds=self._max_seconds)
        except OSError as exc:
            raise AudioRequestError(
                f"audio file {audio_file!r} cannot be read: {exc.strerror or exc}"
            ) from exc

    async def _fetch(self, url: str) -> tuple[bytes, str]:
        failed = f"download of {url} failed"
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http().get(url) as response:
                    if not 200 <= response.status < 300:
                        raise AudioRequestError(f"{failed}: HTTP {response.status}")
                    length = response.content_length
                    if length is not None and length > self._max_bytes:
                        raise AudioRequestError(f"{failed}: larger than {self._max_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise AudioRequestError(
                                f"{failed}: larger than {self._max_bytes} bytes"
                            )
                    return bytes(body), response.headers.get("Cache-Control", "")
        except TimeoutError as exc:
            raise AudioRequestError(
                f"{failed}: no complete answer within {self._timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AudioRequestError(f"{failed}: {str(exc) or type(exc).__name__}") from exc

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: a session belongs to a running loop
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": "pypbx"},
            )
        return self._session

    @staticmethod
    def _resolve(path: Path, audio_file: str) -> Path:
        try:
            return path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise AudioRequestError(f"AudioFile {audio_file!r} cannot be resolved: {exc}") from exc

    @staticmethod
    def _check_file(path: Path, audio_file: str) -> Path:
        if path.is_dir():
            raise AudioRequestError(
                f"AudioFile {audio_file!r} is a directory; directory playlists are not supported"
            )
        if not path.exists():
            raise AudioRequestError(f"audio file {audio_file!r} not found")
        if not path.is_file():
            raise AudioRequestError(f"AudioFile {audio_file!r} is not a regular file")
        return path


def cache_max_age(cache_control: str) -> int | None:
    """Seconds a response may be reused per its Cache-Control; None when it may not."""
    max_age: int | None = None
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return None
        if name == "max-age":
            try:
                max_age = int(value.strip().strip('"'))
            except ValueError:
                return None
    return max_age if max_age is not None and max_age > 0 else None


class _UrlCache:
    """Decoded URL audio with expiry times, least recently used evicted beyond a sample budget."""

    def __init__(self, max_samples: int, clock: Callable[[], float]) -> None:
        self._max_samples = max_samples
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Pcm]] = OrderedDict()
        self._samples = 0

    def get(self, url: str) -> Pcm | None:
        entry = self._entries.get(url)
        if entry is None:
            return None
        expires, pcm = entry
        if self._clock() >= expires:
            self._remove(url)
            return None
        self._entries.move_to_end(url)
        return pcm

    def put(self, url: str, pcm: Pcm, max_age: float) -> None:
        if len(pcm) > self._max_samples:
            return
        if url in self._entries:
            self._remove(url)
        self._entries[url] = (self._clock() + max_age, pcm)
        self._samples += len(pcm)
        while self._samples > self._max_samples:
            self._remove(next(iter(self._entries)))

    def _remove(self, url: str) -> None:
        _, pcm = self._entries.pop(url)
        self._samples -= len(pcm)


def _url_scheme(audio_file: str) -> str | None:
    """The lower-case URL scheme, or None for a file path (`C:\\x.wav` is a path)."""
    match = _SCHEME.match(audio_file.strip())
    if match is None:
        return None
    scheme = match.group(1).lower()
    rest = audio_file.strip()[match.end() :]
    if rest.startswith("//") or scheme in _OPAQUE_SCHEMES:
        return scheme
    return None
