"""Text to speech for the Speak command: espeak-ng as a subprocess, behind a small protocol.

Ozeki clients name voices the Windows way (`Language=en-UK`, `Voice=Microsoft Anna`), and the
spec says an unknown language or voice must fall back to the default voice rather than fail
the call. So voice choice is a forgiving lookup against the voice list espeak-ng prints once:
exact voice, then ever shorter language tags, then the default, each miss logged once.

The text comes from the network. It reaches espeak-ng on stdin, never on the command line,
so `-w /etc/passwd`-style text is read aloud instead of being parsed as an option, and SSML
interpretation stays off. Synthesis runs with a timeout and a length limit.

`SpeechCache` wraps any engine: IVRs repeat the same sentences, and several calls asking
for the same text at once share one synthesis instead of starting one process each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import struct
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pypbx.media.audiofile import to_pcm8k
from pypbx.media.player import Pcm

log = logging.getLogger(__name__)

DEFAULT_VOICE = "en-us"
MAX_TEXT = 4000  # characters; about five minutes of speech
SYNTHESIS_TIMEOUT = 10.0
CACHE_SAMPLES = 8000 * 600  # ten minutes of 8 kHz speech, under 10 MB

# Spanish as spoken in the Americas: espeak-ng's es-419, not Castilian es
_LATIN_AMERICA = frozenset(
    {"ar", "bo", "cl", "co", "cr", "cu", "do", "ec", "gt", "hn", "mx"}
    | {"ni", "pa", "pe", "pr", "py", "sv", "us", "uy", "ve"}
)
# culture codes that shortening the tag cannot map: Windows/.NET names and legacy ISO codes
_LANGUAGE_ALIASES = {
    "en-uk": "en-gb",
    "zh-hk": "yue",
    "zh-mo": "yue",
    "iw": "he",
    "in": "id",
    "nn": "nb",
    "nn-no": "nb",
} | {f"es-{country}": "es-419" for country in _LATIN_AMERICA}
_WARNED_LIMIT = 256  # distinct unknown names remembered, so a busy IVR logs each once
_VOICE_LINE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)$")
_VARIANT_LINE = re.compile(r"^\s*\d+\s+\S+\s+\S+\s+(\S+)\s+!v/(.+?)\s*$")  # file: `Mr serious`
_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+)\s+(\d+)\)")


class SpeechUnavailableError(RuntimeError):
    """No text-to-speech engine on this machine."""


class SpeechError(RuntimeError):
    """The engine ran but produced no usable audio (crash, timeout, garbage output)."""


@dataclass(frozen=True)
class Voice:
    """One installed voice.

    `languages` are the culture codes it speaks with the engine's preference for each
    (lower is preferred), its own language first.
    """

    identifier: str
    name: str
    languages: tuple[tuple[str, int], ...] = ()
    gender: str = ""
    file: str = ""


@dataclass(frozen=True)
class VoiceChoice:
    """What a Speak request asked for: Ozeki's `Language` and `Voice`, both optional."""

    language: str = ""
    voice: str = ""


class SpeechEngine(Protocol):
    def voices(self) -> list[Voice]:
        """The installed voices (may block briefly the first time)."""
        ...

    async def resolve(self, choice: VoiceChoice) -> str:
        """The identifier of the voice `synthesize` uses for `choice`.

        Passing that identifier back as `VoiceChoice(voice=identifier)` selects the same
        voice again, silently: that is how `SpeechCache` keys and replays requests.
        """
        ...

    async def synthesize(self, text: str, voice: VoiceChoice) -> Pcm:
        """`text` spoken as 8 kHz mono int16 PCM."""
        ...


def normalize_language(tag: str) -> str:
    """`en_US` and `EN-us` are the same culture code; also maps Windows-only names."""
    tag = tag.strip().lower().replace("_", "-")
    return _LANGUAGE_ALIASES.get(tag, tag)


def parse_voices(listing: str) -> list[Voice]:
    """Voices from the output of `espeak-ng --voices`.

    Two voices may share a language id (Cantonese twice); the later one is named by its
    voice file instead, which `-v` accepts as well.
    """
    voices: list[Voice] = []
    seen: set[str] = set()
    for line in listing.splitlines():
        match = _VOICE_LINE.match(line)
        if match is None:
            continue  # the header, or something a future espeak-ng adds
        priority, language, age_gender, name, file, others = match.groups()
        identifier = language if language.lower() not in seen else file
        seen.add(identifier.lower())
        languages = [(language.lower(), int(priority))]
        languages += [(code.lower(), int(p)) for code, p in _OTHER_LANGUAGE.findall(others)]
        gender = age_gender.rpartition("/")[2].replace("-", "")
        voices.append(Voice(identifier, name.replace("_", " "), tuple(languages), gender, file))
    return voices


def parse_variants(listing: str) -> dict[str, str]:
    """Variant name -> variant file from `espeak-ng --voices=variant` (`Annie` -> `Annie`)."""
    variants: dict[str, str] = {}
    for line in listing.splitlines():
        match = _VARIANT_LINE.match(line)
        if match is not None:
            name, file = match.groups()
            variants.setdefault(_name_key(name), file)
            variants.setdefault(_name_key(file), file)
    return variants


@dataclass
class VoiceIndex:
    """Maps what clients ask for onto installed voices, never failing (spec 8.10)."""

    voices: list[Voice]
    variants: Mapping[str, str] = field(default_factory=dict)
    default: str = DEFAULT_VOICE

    def __post_init__(self) -> None:
        self._by_id = {v.identifier.lower(): v.identifier for v in self.voices}
        self._by_file = {v.file.lower(): v.identifier for v in self.voices if v.file}
        self._by_name: dict[str, str] = {}
        self._by_language: dict[str, tuple[int, str]] = {}
        for v in self.voices:
            self._by_name.setdefault(_name_key(v.name), v.identifier)
            for code, priority in v.languages:
                best = self._by_language.get(code)
                if best is None or priority < best[0]:
                    self._by_language[code] = (priority, v.identifier)
        self._warned: set[str] = set()
        self._default_id = self._resolve_default()

    @property
    def default_id(self) -> str:
        return self._default_id

    def resolve(self, choice: VoiceChoice) -> str:
        """The voice identifier (maybe `base+variant`) for a request; '' = engine default."""
        base = self._default_id
        if choice.language.strip():
            found = self.for_language(choice.language)
            if found is None:
                self._warn(f"language {choice.language!r}", f"unknown Language {choice.language!r}")
            else:
                base = found
        if not choice.voice.strip():
            return base
        explicit = self._voice(choice.voice)
        if explicit is not None:
            return explicit
        variant = self.variants.get(_name_key(choice.voice))
        if variant is not None and base:
            return f"{base.partition('+')[0]}+{variant}"
        self._warn(f"voice {choice.voice!r}", f"unknown Voice {choice.voice!r} ignored")
        return base

    def for_language(self, language: str) -> str | None:
        """Best voice for a culture code: exact, then with subtags dropped (pt-BR -> pt)."""
        tag = normalize_language(language)
        while tag:
            if tag in self._by_id:
                return self._by_id[tag]
            if tag in self._by_language:
                return self._by_language[tag][1]
            tag = normalize_language(tag.rpartition("-")[0])
        return None

    def _voice(self, text: str) -> str | None:
        base, plus, variant_name = text.strip().partition("+")
        found = (
            self._by_id.get(base.lower().replace("_", "-"))
            or self._by_id.get(base.lower())
            or self._by_file.get(base.lower())
            or self._by_name.get(_name_key(base))
        )
        if found is None or not plus:
            return found
        variant = self.variants.get(_name_key(variant_name))
        return f"{found}+{variant}" if variant is not None else None

    def _resolve_default(self) -> str:
        if not self.voices:
            return ""  # let espeak-ng pick; it knows better than an empty list
        found = self._voice(self.default) or self.for_language(self.default)
        if found is None:
            found = self.for_language("en") or self.voices[0].identifier
            log.warning("default voice %r is not installed; using %s", self.default, found)
        return found

    def _warn(self, what: str, message: str) -> None:
        if what in self._warned:
            log.debug("%s; using voice %s", message, self._default_id)
            return
        if len(self._warned) < _WARNED_LIMIT:
            self._warned.add(what)
        log.warning("%s; falling back to voice %s", message, self._default_id or "(default)")


class EspeakEngine:
    """`SpeechEngine` backed by the espeak-ng command-line program."""

    def __init__(
        self,
        binary: str = "espeak-ng",
        *,
        default_voice: str = DEFAULT_VOICE,
        timeout: float = SYNTHESIS_TIMEOUT,
        max_text: int = MAX_TEXT,
        speed: int | None = None,
    ) -> None:
        self._binary = binary
        self._default_voice = default_voice
        self._timeout = timeout
        self._max_text = max_text
        self._speed = speed
        self._index: VoiceIndex | None = None
        self._lock = threading.Lock()  # voices() may run in a worker thread

    def voices(self) -> list[Voice]:
        return list(self._voice_index().voices)

    async def resolve(self, choice: VoiceChoice) -> str:
        index = self._index
        if index is None:
            index = await asyncio.to_thread(self._voice_index)
        return index.resolve(choice)

    async def synthesize(self, text: str, voice: VoiceChoice) -> Pcm:
        text = check_text(text, self._max_text)
        identifier = await self.resolve(voice)
        args = [self._program(), "-b", "1", "--stdout", "--stdin"]
        if identifier:
            args += ["-v", identifier]
        if self._speed is not None:
            args += ["-s", str(self._speed)]
        wav = await self._run(args, text.encode("utf-8"))
        rate, samples = parse_wav_stream(wav)
        return await asyncio.to_thread(to_pcm8k, samples, rate)

    def _program(self) -> str:
        program = shutil.which(self._binary)
        if program is None:
            raise SpeechUnavailableError(
                f"text-to-speech is unavailable: {self._binary!r} not found "
                "(install the espeak-ng package)"
            )
        return program

    def _voice_index(self) -> VoiceIndex:
        with self._lock:
            if self._index is None:
                program = self._program()
                voices = parse_voices(self._list(program, "--voices"))
                variants = parse_variants(self._list(program, "--voices=variant"))
                log.info(
                    "espeak-ng: %d voices, %d variants", len(voices), len(set(variants.values()))
                )
                self._index = VoiceIndex(voices, variants, self._default_voice)
            return self._index

    def _list(self, program: str, option: str) -> str:
        try:
            done = subprocess.run(
                [program, option], capture_output=True, timeout=self._timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechUnavailableError(f"cannot list espeak-ng voices: {exc}") from exc
        if done.returncode != 0:
            raise SpeechUnavailableError(
                f"cannot list espeak-ng voices: exit status {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()[:200]}"
            )
        return done.stdout.decode("utf-8", errors="replace")

    async def _run(self, args: list[str], text: bytes) -> bytes:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SpeechUnavailableError(f"cannot start espeak-ng: {exc}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                out, err = await proc.communicate(text)
        except TimeoutError:
            raise SpeechError(f"espeak-ng took longer than {self._timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: leave no process behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0 or not out:
            detail = err.decode(errors="replace").strip()[:200] or "no audio produced"
            raise SpeechError(f"espeak-ng failed (exit status {proc.returncode}): {detail}")
        return out


class SpeechCache:
    """LRU cache of synthesized speech in front of any engine, bounded by total samples.

    Entries are read-only arrays shared by every caller. A synthesis runs as its own task:
    when one of several waiting callers gives up, the others still get their audio.
    """

    def __init__(self, engine: SpeechEngine, *, max_samples: int = CACHE_SAMPLES) -> None:
        self._engine = engine
        self._max_samples = max_samples
        self._entries: OrderedDict[tuple[str, str], Pcm] = OrderedDict()
        self._samples = 0
        self._pending: dict[tuple[str, str], asyncio.Task[Pcm]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def samples(self) -> int:
        return self._samples

    def __len__(self) -> int:
        return len(self._entries)

    def voices(self) -> list[Voice]:
        return self._engine.voices()

    async def resolve(self, choice: VoiceChoice) -> str:
        return await self._engine.resolve(choice)

    async def synthesize(self, text: str, voice: VoiceChoice) -> Pcm:
        key = (text, await self._engine.resolve(voice))
        pcm = self._entries.get(key)
        if pcm is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return pcm
        task = self._pending.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.get_running_loop().create_task(self._synthesize(key))
            task.add_done_callback(_retrieve)
            self._pending[key] = task
        return await asyncio.shield(task)

    def clear(self) -> None:
        self._entries.clear()
        self._samples = 0

    async def _synthesize(self, key: tuple[str, str]) -> Pcm:
        try:
            pcm = await self._engine.synthesize(key[0], VoiceChoice(voice=key[1]))
        finally:
            del self._pending[key]
        pcm.flags.writeable = False
        self._store(key, pcm)
        return pcm

    def _store(self, key: tuple[str, str], pcm: Pcm) -> None:
        if len(pcm) > self._max_samples:
            return
        self._entries[key] = pcm
        self._samples += len(pcm)
        while self._samples > self._max_samples:
            _, evicted = self._entries.popitem(last=False)
            self._samples -= len(evicted)


def check_text(text: str, max_text: int = MAX_TEXT) -> str:
    """The text to speak, or ValueError if there is nothing to say or far too much."""
    if not text.strip():
        raise ValueError("text to speak is empty")
    if len(text) > max_text:
        raise ValueError(f"text to speak is longer than {max_text} characters")
    return text.replace("\x00", " ")


def parse_wav_stream(data: bytes) -> tuple[int, npt.NDArray[np.float32]]:
    """Rate and float samples of espeak-ng's `--stdout` WAV.

    A stream cannot be rewound to patch the sizes into the header, so espeak-ng writes
    placeholders there; the data simply runs to the end of the output.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError("espeak-ng output is not a WAV stream")
    pos, rate, fmt = 12, 0, (0, 0, 0)
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt " and body + 16 <= len(data):
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt = (tag, channels, bits)
        elif chunk == b"data":
            if fmt != (1, 1, 16) or rate <= 0:
                raise SpeechError(f"espeak-ng output has unexpected format {fmt} at {rate} Hz")
            raw = data[body : min(len(data), body + size)]
            raw = raw[: len(raw) - len(raw) % 2]
            samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768)
            return rate, samples
        pos = body + size + (size & 1)
    raise SpeechError("espeak-ng output has no audio data")


def _name_key(name: str) -> str:
    """Voice names compare without case, and `_` as space (espeak-ng prints `English_(America)`)."""
    return " ".join(name.replace("_", " ").lower().split())


def _retrieve(task: asyncio.Task[Pcm]) -> None:
    # all callers may have been cancelled; the error is theirs, not the loop's to report
    if not task.cancelled():
        task.exception()
