"""Play's AudioFile: confined local paths and http(s) downloads with limits and caching."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from aiohttp import web

from pypbx.media.audiofile import AudioFormatError
from pypbx.media.fetch import AudioRequestError, AudioResolver, cache_max_age


def tone(freq: float, seconds: float = 0.5, rate: int = 16000) -> npt.NDArray[np.float64]:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def audio_bytes(freq: float, fmt: str = "WAV", rate: int = 16000, seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(freq, seconds, rate), rate, format=fmt)
    return buf.getvalue()


def peak_hz(pcm: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum)) * 8000 / len(pcm)


# --- local files ------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "hello.wav").write_bytes(audio_bytes(440))
    (root / "both.wav").write_bytes(audio_bytes(440))
    (root / "sub" / "prompt.mp3").write_bytes(audio_bytes(1000, "MP3"))
    (root / "sub" / "named-wrong.wav").write_bytes(audio_bytes(1000, "MP3"))
    (root / "notes.wav").write_text("these are not the droids")
    (root / "prompt-12:30.wav").write_bytes(audio_bytes(440))
    second = tmp_path / "more"
    second.mkdir()
    (second / "both.wav").write_bytes(audio_bytes(2000))
    (second / "extra.wav").write_bytes(audio_bytes(2000))
    (tmp_path / "secret.wav").write_bytes(audio_bytes(3000))
    return root


@pytest.fixture
async def resolver(media: Path) -> AsyncIterator[AudioResolver]:
    res = AudioResolver([media, media.parent / "more"])
    yield res
    await res.close()


@pytest.mark.parametrize(
    ("name", "freq"),
    [
        ("hello.wav", 440),
        ("./hello.wav", 440),
        ("sub/prompt.mp3", 1000),
        ("sub\\prompt.mp3", 1000),  # Windows separators, as Ozeki clients write them
        ("sub/named-wrong.wav", 1000),  # an MP3 called .wav plays all the same
        ("both.wav", 440),  # the first media directory wins
        ("extra.wav", 2000),  # ... and the second is searched too
        ("prompt-12:30.wav", 440),  # a colon does not make a URL
    ],
)
async def test_local_files(resolver: AudioResolver, name: str, freq: float) -> None:
    pcm = await resolver.load(name)
    assert pcm.dtype == np.int16
    assert abs(peak_hz(pcm[400:3600]) - freq) < 5


async def test_absolute_path_inside_a_root(resolver: AudioResolver, media: Path) -> None:
    assert len(await resolver.load(str(media / "hello.wav"))) == 4000
    assert resolver.resolve_path(str(media.parent / "more" / "extra.wav")).name == "extra.wav"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "AudioFile is empty"),
        ("   ", "AudioFile is empty"),
        ("hello.wav\x00.txt", "AudioFile contains a NUL byte"),
        ("../secret.wav", "AudioFile '../secret.wav' must not contain '..'"),
        ("sub/../../secret.wav", "AudioFile 'sub/../../secret.wav' must not contain '..'"),
        ("sub/../hello.wav", "AudioFile 'sub/../hello.wav' must not contain '..'"),
        ("..\\secret.wav", "AudioFile '..\\\\secret.wav' must not contain '..'"),
        ("/etc/passwd", "AudioFile '/etc/passwd' is outside the media directory"),
        ("\\etc\\passwd", "AudioFile '\\\\etc\\\\passwd' is outside the media directory"),
        ("nope.wav", "audio file 'nope.wav' not found"),
        ("C:\\media\\hello.wav", "audio file 'C:\\\\media\\\\hello.wav' not found"),
        ("sub", "AudioFile 'sub' is a directory; directory playlists are not supported"),
        ("sub/", "AudioFile 'sub/' is a directory; directory playlists are not supported"),
        (
            "file:///etc/passwd",
            "AudioFile URL scheme 'file' is not supported (only http and https)",
        ),
        ("file:/etc/passwd", "AudioFile URL scheme 'file' is not supported (only http and https)"),
        ("FTP://host/a.wav", "AudioFile URL scheme 'ftp' is not supported (only http and https)"),
        (
            "data:audio/wav;base64,AAAA",
            "AudioFile URL scheme 'data' is not supported (only http and https)",
        ),
        (
            "gopher://x/a.wav",
            "AudioFile URL scheme 'gopher' is not supported (only http and https)",
        ),
    ],
)
async def test_rejected_names(resolver: AudioResolver, name: str, message: str) -> None:
    with pytest.raises(AudioRequestError) as info:
        await resolver.load(name)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


async def test_absolute_path_outside_the_roots(resolver: AudioResolver, media: Path) -> None:
    outside = str(media.parent / "secret.wav")
    with pytest.raises(AudioRequestError, match=r"is outside the media directory$"):
        await resolver.load(outside)


async def test_symlinks_may_not_lead_out(resolver: AudioResolver, media: Path) -> None:
    (media / "escape.wav").symlink_to(media.parent / "secret.wav")
    (media / "escape-dir").symlink_to(media.parent)
    (media / "dangling.wav").symlink_to(media.parent / "nothing-here.wav")
    (media / "alias.wav").symlink_to(media / "hello.wav")
    for name in ("escape.wav", "escape-dir/secret.wav", "dangling.wav"):
        with pytest.raises(AudioRequestError) as info:
            await resolver.load(name)
        assert str(info.value) == f"AudioFile {name!r} leads outside the media directory"
    with pytest.raises(AudioRequestError, match=r"is outside the media directory$"):
        await resolver.load(str(media / "escape.wav"))  # absolute, through the link
    assert len(await resolver.load("alias.wav")) == 4000  # a link that stays inside is fine


async def test_symlink_loop(resolver: AudioResolver, media: Path) -> None:
    (media / "loop.wav").symlink_to(media / "loop.wav")
    with pytest.raises(AudioRequestError, match=r"^AudioFile 'loop.wav' cannot be resolved"):
        await resolver.load("loop.wav")


async def test_a_symlinked_media_root_is_fine(media: Path, tmp_path: Path) -> None:
    link = tmp_path / "media-link"
    link.symlink_to(media)
    res = AudioResolver([link])
    assert len(await res.load("hello.wav")) == 4000
    assert len(await res.load(str(link / "hello.wav"))) == 4000
    assert res.media_dirs == [media]


async def test_not_audio_names_the_file_as_the_client_did(resolver: AudioResolver) -> None:
    with pytest.raises(AudioFormatError) as info:
        await resolver.load("notes.wav")
    assert str(info.value) == "notes.wav: not a WAV or MP3 file"  # no server path revealed


async def test_no_media_directory(tmp_path: Path) -> None:
    res = AudioResolver([])
    with pytest.raises(AudioRequestError) as info:
        await res.load("hello.wav")
    assert str(info.value) == "no media directory is configured for relative AudioFile paths"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
async def test_unreadable_file(resolver: AudioResolver, media: Path) -> None:
    (media / "hello.wav").chmod(0)
    with pytest.raises(AudioRequestError, match=r"^audio file 'hello.wav' cannot be read: "):
        await resolver.load("hello.wav")


async def test_local_duration_limit(media: Path) -> None:
    res = AudioResolver([media], max_seconds=0.25)
    with pytest.raises(
        AudioFormatError, match=r"^hello\.wav: audio is longer than the 0\.25 s limit$"
    ):
        await res.load("hello.wav")


# --- HTTP -------------------------------------------------------------------------------------

WAV_440 = audio_bytes(440, rate=22050)
MP3_1000 = audio_bytes(1000, "MP3", rate=44100)
BIG = 200_000


class Origin:
    """The web server the tests download from, counting requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        fixed = {
            "hello.wav": (WAV_440, {}),
            "hello.mp3": (MP3_1000, {"Content-Type": "application/octet-stream"}),
            "cached.wav": (WAV_440, {"Cache-Control": "public, max-age=60"}),
            "zero.wav": (WAV_440, {"Cache-Control": "max-age=0"}),
            "nostore.wav": (WAV_440, {"Cache-Control": "no-store, max-age=60"}),
            "garbage.wav": (b"<html>not found, really</html>", {}),
            "big.wav": (b"\0" * BIG, {}),
        }
        if name in fixed:
            body, headers = fixed[name]
            return web.Response(body=body, headers=headers)
        if name == "redirect.wav":
            raise web.HTTPFound("/hello.wav")
        if name == "broken":
            raise web.HTTPInternalServerError()
        if name == "endless.wav":  # no Content-Length, and never done
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                for _ in range(1000):
                    await response.write(b"\0" * 16384)
            except (ConnectionError, RuntimeError):
                pass  # the client hung up, as it should
            return response
        if name == "slow.wav":  # no answer at all for a long time
            await asyncio.sleep(3)
            return web.Response(body=WAV_440)
        if name == "trickle.wav":  # headers at once, then a byte now and then
            response = web.StreamResponse()
            response.content_length = len(WAV_440)
            await response.prepare(request)
            for i in range(0, len(WAV_440), 100):
                await response.write(WAV_440[i : i + 100])
                await asyncio.sleep(0.1)
            return response
        raise web.HTTPNotFound()


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin()
    runner = web.AppRunner(server.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    yield server
    await runner.cleanup()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def web_resolver(tmp_path: Path) -> AsyncIterator[AudioResolver]:
    res = AudioResolver([tmp_path], timeout=0.5, max_bytes=100_000)
    yield res
    await res.close()


async def test_download_wav(web_resolver: AudioResolver, origin: Origin) -> None:
    pcm = await web_resolver.load(f"{origin.url}/hello.wav")
    assert len(pcm) == 4000 and abs(peak_hz(pcm) - 440) < 5


async def test_download_mp3(web_resolver: AudioResolver, origin: Origin) -> None:
    pcm = await web_resolver.load(f"  {origin.url}/hello.mp3 ")
    assert abs(len(pcm) - 4000) <= 80 and abs(peak_hz(pcm[400:3600]) - 1000) < 5


async def test_redirect_is_followed(web_resolver: AudioResolver, origin: Origin) -> None:
    assert len(await web_resolver.load(f"{origin.url}/redirect.wav")) == 4000
    assert origin.hits["hello.wav"] == 1


@pytest.mark.parametrize(("name", "status"), [("missing.wav", 404), ("broken", 500)])
async def test_http_errors(
    web_resolver: AudioResolver, origin: Origin, name: str, status: int
) -> None:
    url = f"{origin.url}/{name}"
    with pytest.raises(AudioRequestError) as info:
        await web_resolver.load(url)
    assert str(info.value) == f"download of {url} failed: HTTP {status}"


async def test_oversized_with_content_length(web_resolver: AudioResolver, origin: Origin) -> None:
    url = f"{origin.url}/big.wav"
    with pytest.raises(AudioRequestError) as info:
        await web_resolver.load(url)
    assert str(info.value) == f"download of {url} failed: larger than 100000 bytes"


async def test_oversized_stream_is_cut_off(web_resolver: AudioResolver, origin: Origin) -> None:
    url = f"{origin.url}/endless.wav"
    started = time.monotonic()
    with pytest.raises(AudioRequestError) as info:
        await web_resolver.load(url)
    assert str(info.value) == f"download of {url} failed: larger than 100000 bytes"
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("name", ["slow.wav", "trickle.wav"])
async def test_slow_server_times_out(
    web_resolver: AudioResolver, origin: Origin, name: str
) -> None:
    url = f"{origin.url}/{name}"
    started = time.monotonic()
    with pytest.raises(AudioRequestError) as info:
        await web_resolver.load(url)
    assert str(info.value) == f"download of {url} failed: no complete answer within 0.5 s"
    assert 0.4 < time.monotonic() - started < 1.5


async def test_garbage_is_a_format_error(web_resolver: AudioResolver, origin: Origin) -> None:
    url = f"{origin.url}/garbage.wav"
    with pytest.raises(AudioFormatError) as info:
        await web_resolver.load(url)
    assert str(info.value) == f"{url}: not a WAV or MP3 file"


async def test_connection_refused(web_resolver: AudioResolver) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.wav"
    with pytest.raises(AudioRequestError, match=f"^download of {url} failed: Cannot connect"):
        await web_resolver.load(url)


async def test_malformed_url(web_resolver: AudioResolver) -> None:
    with pytest.raises(AudioRequestError, match=r"^download of http:// failed: "):
        await web_resolver.load("http://")


async def test_cached_for_max_age(origin: Origin, tmp_path: Path) -> None:
    clock = FakeClock()
    res = AudioResolver([tmp_path], clock=clock)
    try:
        url = f"{origin.url}/cached.wav"
        first = await res.load(url)
        clock.now += 59
        assert await res.load(url) is first
        assert origin.hits["cached.wav"] == 1
        assert not first.flags.writeable  # shared between calls
        clock.now += 2
        assert np.array_equal(await res.load(url), first)
        assert origin.hits["cached.wav"] == 2
    finally:
        await res.close()


@pytest.mark.parametrize("name", ["hello.wav", "zero.wav", "nostore.wav"])
async def test_not_cached_without_max_age(
    origin: Origin, web_resolver: AudioResolver, name: str
) -> None:
    await web_resolver.load(f"{origin.url}/{name}")
    await web_resolver.load(f"{origin.url}/{name}")
    assert origin.hits[name] == 2


async def test_cache_is_bounded(origin: Origin, tmp_path: Path) -> None:
    res = AudioResolver([tmp_path], cache_samples=6000)  # room for one 4000-sample prompt
    try:
        await res.load(f"{origin.url}/cached.wav")
        await res.load(f"{origin.url}/cached.wav?v=2")  # another URL: evicts the first
        await res.load(f"{origin.url}/cached.wav?v=2")
        await res.load(f"{origin.url}/cached.wav")
        assert origin.hits["cached.wav"] == 3
    finally:
        await res.close()


async def test_close_is_idempotent_and_the_resolver_reopens(origin: Origin, tmp_path: Path) -> None:
    res = AudioResolver([tmp_path])
    await res.close()  # never opened
    await res.load(f"{origin.url}/hello.wav")
    await res.close()
    await res.close()
    assert len(await res.load(f"{origin.url}/hello.wav")) == 4000
    await res.close()


async def test_decoding_does_not_stall_the_loop(origin: Origin, tmp_path: Path) -> None:
    (tmp_path / "long.wav").write_bytes(audio_bytes(440, rate=48000, seconds=120))
    res = AudioResolver([tmp_path])
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        pcm = await res.load("long.wav")
    finally:
        task.cancel()
    assert len(pcm) == 120 * 8000
    assert len(gaps) > 5 and max(gaps) < 0.25  # decoding in the loop would be one long gap


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("", None),
        ("max-age=60", 60),
        ("public, max-age=3600", 3600),
        ('max-age="30"', 30),
        ("MAX-AGE=10, must-revalidate", 10),
        ("max-age=0", None),
        ("max-age=-5", None),
        ("max-age=soon", None),
        ("no-store", None),
        ("no-store, max-age=60", None),
        ("max-age=60, no-cache", None),
        ("private", None),
        ("s-maxage=60", None),
    ],
)
def test_cache_max_age(header: str, seconds: int | None) -> None:
    assert cache_max_age(header) == seconds
