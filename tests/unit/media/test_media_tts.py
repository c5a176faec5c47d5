"""Text to speech: voice choice from Ozeki's Language/Voice, espeak-ng for real, the cache."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pypbx.media.tts import (
    EspeakEngine,
    SpeechCache,
    SpeechError,
    SpeechUnavailableError,
    Voice,
    VoiceChoice,
    VoiceIndex,
    check_text,
    normalize_language,
    parse_variants,
    parse_voices,
    parse_wav_stream,
)

# excerpts of `espeak-ng --voices` and `--voices=variant` (1.51), two lines narrowed
VOICES = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  cmn     --/M  Chinese_(Mandarin,_latin_as_English) sit/cmn  (zh-cmn 5)(zh 5)
 5  de              --/M      German             gmw/de
 5  en-029          --/M      English_(Caribbean) gmw/en-029           (en 10)
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 5  en-gb-x-rp      --/M      English_(Received_Pronunciation) gmw/en-GB-x-rp       (en-gb 4)(en 5)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  es              --/M      Spanish_(Spain)    roa/es
 5  es-419          --/M      Spanish_(Latin_America) roa/es-419           (es-mx 6)(es 6)
 5  fr-be           --/M      French_(Belgium)   roa/fr-BE            (fr 8)
 5  fr-fr           --/M      French_(France)    roa/fr               (fr 5)
 5  hu              --/M      Hungarian          urj/hu
 5  nb              --/M      Norwegian_Bokmål  gmq/nb               (no 5)
 5  pt              --/M      Portuguese_(Portugal) roa/pt               (pt-pt 5)
 5  pt-br           --/M      Portuguese_(Brazil) roa/pt-BR            (pt 6)
 5  yue             --/M      Chinese_(Cantonese) sit/yue              (zh-yue 5)(zh 8)
 5  yue     --/M  Chinese_(Cantonese,_latin_as_Jyutping) sit/yue-Latn-jyutping (zh-yue 5)(zh 8)
"""
VARIANTS = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/F      Annie              !v/Annie
 5  variant         --/F      Auntie             !v/aunty
 5  variant         --/M      Mr_Serious         !v/Mr serious
 5  variant         --/F      female2            !v/f2
"""


@pytest.fixture
def index() -> VoiceIndex:
    return VoiceIndex(parse_voices(VOICES), parse_variants(VARIANTS), default="en-us")


# --- parsing ----------------------------------------------------------------------------------


def test_parse_voices() -> None:
    voices = parse_voices(VOICES)
    assert len(voices) == 16
    assert voices[3] == Voice(
        "en-gb", "English (Great Britain)", (("en-gb", 2), ("en", 2)), "M", "gmw/en"
    )
    assert voices[0].languages == (("cmn", 5), ("zh-cmn", 5), ("zh", 5))
    # the second Cantonese voice shares the language id, so it is named by its file
    assert [v.identifier for v in voices[-2:]] == ["yue", "sit/yue-Latn-jyutping"]
    assert voices[11].name == "Norwegian Bokmål"


def test_parse_voices_skips_what_it_does_not_understand() -> None:
    assert parse_voices("") == []
    assert parse_voices("Pty Language\ngarbage line\n 5 de\n") == []


def test_parse_variants() -> None:
    variants = parse_variants(VARIANTS)
    assert variants["annie"] == "Annie"
    assert variants["auntie"] == variants["aunty"] == "aunty"
    assert variants["mr serious"] == "Mr serious"  # the file name has a space
    assert variants["female2"] == variants["f2"] == "f2"
    assert parse_variants(VOICES) == {}


# --- language and voice choice ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "normalized"),
    [
        ("en-US", "en-us"),
        ("en_US", "en-us"),
        (" EN-us ", "en-us"),
        ("en-UK", "en-gb"),
        ("en_uk", "en-gb"),
        ("pt-BR", "pt-br"),
        ("zh-HK", "yue"),
        ("es-MX", "es-419"),
        ("es-AR", "es-419"),
        ("es-ES", "es-es"),
        ("iw", "he"),
        ("", ""),
    ],
)
def test_normalize_language(tag: str, normalized: str) -> None:
    assert normalize_language(tag) == normalized


@pytest.mark.parametrize(
    ("language", "voice", "expected"),
    [
        ("", "", "en-us"),  # nothing asked: the default
        ("en-UK", "", "en-gb"),  # Ozeki's spelling of British English
        ("en-GB", "", "en-gb"),
        ("en-us", "", "en-us"),
        ("EN_us", "", "en-us"),
        ("en", "", "en-gb"),  # espeak-ng's preference for plain "en" (priority 2 over 3)
        ("en-AU", "", "en-gb"),  # no Australian voice: language only
        ("pt-BR", "", "pt-br"),
        ("pt-PT", "", "pt"),  # listed as another language of `pt`
        ("pt", "", "pt"),
        ("de", "", "de"),
        ("de-AT", "", "de"),
        ("hu-HU", "", "hu"),
        ("fr", "", "fr-fr"),  # priority 5 beats fr-be's 8
        ("fr-CA", "", "fr-fr"),
        ("es-MX", "", "es-419"),
        ("es-ES", "", "es"),
        ("zh-CN", "", "cmn"),
        ("zh-HK", "", "yue"),
        ("no", "", "nb"),
        ("nb-NO", "", "nb"),
        ("xx-YY", "", "en-us"),  # unknown: default
        ("", "en-gb", "en-gb"),  # a voice id
        ("", "EN_GB", "en-gb"),
        ("", "English (America)", "en-us"),  # a voice name, as listed or with spaces
        ("", "english_(great_britain)", "en-gb"),
        ("", "gmw/en-GB-x-rp", "en-gb-x-rp"),  # a voice file
        ("", "sit/yue-Latn-jyutping", "sit/yue-Latn-jyutping"),
        ("de", "English (America)", "en-us"),  # an explicit voice wins over the language
        ("en-UK", "Annie", "en-gb+Annie"),  # a variant goes with the language's voice
        ("", "auntie", "en-us+aunty"),
        ("de", "Mr Serious", "de+Mr serious"),
        ("", "en-gb+f2", "en-gb+f2"),
        ("", "pt-br+Annie", "pt-br+Annie"),
        ("", "en-gb+nosuch", "en-us"),  # unknown variant: the whole voice is unknown
        ("", "Microsoft Anna", "en-us"),  # a Windows voice: ignored
        ("pt-BR", "Microsoft Anna", "pt-br"),  # ... but the language still counts
    ],
)
def test_resolve(index: VoiceIndex, language: str, voice: str, expected: str) -> None:
    assert index.resolve(VoiceChoice(language, voice)) == expected


def test_a_resolved_identifier_selects_itself_silently(
    index: VoiceIndex, caplog: pytest.LogCaptureFixture
) -> None:
    for choice in [VoiceChoice("xx"), VoiceChoice("en-UK", "Annie"), VoiceChoice("zh")]:
        identifier = index.resolve(choice)
        caplog.clear()
        assert index.resolve(VoiceChoice(voice=identifier)) == identifier
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for v in parse_voices(VOICES):
        assert index.resolve(VoiceChoice(voice=v.identifier)) == v.identifier


def test_unknown_names_are_logged_once(index: VoiceIndex, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pypbx.media.tts"):
        index.resolve(VoiceChoice("xx-YY", "Microsoft Anna"))
        index.resolve(VoiceChoice("xx-YY", "Microsoft Anna"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "unknown Language 'xx-YY'; falling back to voice en-us",
        "unknown Voice 'Microsoft Anna' ignored; falling back to voice en-us",
    ]


def test_missing_default_voice_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    index = VoiceIndex(parse_voices(VOICES), {}, default="klingon")
    assert index.default_id == "en-gb"
    assert "default voice 'klingon' is not installed; using en-gb" in caplog.text
    assert VoiceIndex(parse_voices(VOICES), {}, default="pt-BR").default_id == "pt-br"
    assert VoiceIndex(parse_voices(VOICES), {}, default="English (America)").default_id == "en-us"


def test_no_voices_at_all_leaves_the_choice_to_espeak() -> None:
    index = VoiceIndex([], {})
    assert index.resolve(VoiceChoice("en-UK", "Annie")) == ""


# --- text and output checks -------------------------------------------------------------------


def test_check_text() -> None:
    assert check_text("hello") == "hello"
    assert check_text("a\x00b") == "a b"
    assert check_text("x" * 4000) == "x" * 4000
    with pytest.raises(ValueError, match=r"^text to speak is empty$"):
        check_text("")
    with pytest.raises(ValueError, match=r"^text to speak is empty$"):
        check_text(" \n\t")
    with pytest.raises(ValueError, match=r"^text to speak is longer than 4000 characters$"):
        check_text("x" * 4001)
    with pytest.raises(ValueError, match=r"^text to speak is longer than 10 characters$"):
        check_text("x" * 11, 10)


def stream_wav(samples: bytes, *, rate: int = 22050, channels: int = 1, bits: int = 16) -> bytes:
    """A WAV as espeak-ng writes it to a pipe: placeholder sizes in the header."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2, 2, bits)
    return b"RIFF\x24\xf0\xff\x7fWAVEfmt \x10\x00\x00\x00" + fmt + b"data\x00\xf0\xff\x7f" + samples


def test_parse_wav_stream() -> None:
    rate, samples = parse_wav_stream(stream_wav(struct.pack("<3h", 16384, -32768, 0) + b"\x01"))
    assert rate == 22050
    assert samples.tolist() == [0.5, -1.0, 0.0]  # the odd trailing byte is dropped


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "espeak-ng output is not a WAV stream"),
        (b"Error: voice does not exist", "espeak-ng output is not a WAV stream"),
        (stream_wav(b"")[:36], "espeak-ng output has no audio data"),
        (stream_wav(b"\0\0", channels=2), r"espeak-ng output has unexpected format \(1, 2, 16\)"),
        (stream_wav(b"\0\0", bits=8), r"espeak-ng output has unexpected format \(1, 1, 8\)"),
    ],
)
def test_parse_wav_stream_rejects(data: bytes, message: str) -> None:
    with pytest.raises(SpeechError, match=message):
        parse_wav_stream(data)


# --- espeak-ng for real -----------------------------------------------------------------------

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def band_share(pcm: npt.NDArray[np.int16], low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    return float(spectrum[(freqs >= low) & (freqs <= high)].sum() / spectrum.sum())


@needs_espeak
async def test_hello_world_sounds_like_speech() -> None:
    pcm = await EspeakEngine().synthesize("hello world", VoiceChoice("en-UK"))
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert 0.5 <= len(pcm) / 8000 <= 3.0
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500  # clearly audible
    assert band_share(pcm, 150, 3400) > 0.9  # voice band, what a phone carries


@needs_espeak
async def test_longer_text_takes_longer() -> None:
    engine = EspeakEngine()
    short = await engine.synthesize("one", VoiceChoice())
    long = await engine.synthesize("one two three four five six seven eight", VoiceChoice())
    assert len(long) > 2 * len(short)


@needs_espeak
async def test_language_changes_the_voice() -> None:
    engine = EspeakEngine()
    english = await engine.synthesize("Budapest", VoiceChoice("en-us"))
    hungarian = await engine.synthesize("Budapest", VoiceChoice("hu-HU"))
    assert not np.array_equal(english, hungarian)


@needs_espeak
async def test_text_is_never_an_option(tmp_path: Path) -> None:
    target = tmp_path / "pwned.wav"
    pcm = await EspeakEngine().synthesize(f"-w {target} --version", VoiceChoice())
    assert len(pcm) / 8000 > 1.0  # it was read aloud
    assert not target.exists()


@needs_espeak
async def test_unknown_language_and_voice_still_speak() -> None:
    pcm = await EspeakEngine().synthesize("hello", VoiceChoice("xx-YY", "Microsoft Anna"))
    assert len(pcm) > 1600


@needs_espeak
async def test_real_voice_list_and_mapping() -> None:
    engine = EspeakEngine()
    identifiers = {v.identifier for v in engine.voices()}
    assert {"en-gb", "en-us", "pt-br", "pt", "de", "hu"} <= identifiers
    assert await engine.resolve(VoiceChoice("en-UK")) == "en-gb"
    assert await engine.resolve(VoiceChoice("pt-BR")) == "pt-br"
    assert await engine.resolve(VoiceChoice("hu-HU")) == "hu"
    assert await engine.resolve(VoiceChoice("en-us", "Annie")) == "en-us+Annie"
    assert await engine.resolve(VoiceChoice()) == "en-us"


@needs_espeak
async def test_engine_rejects_bad_text() -> None:
    engine = EspeakEngine(max_text=20)
    with pytest.raises(ValueError, match=r"^text to speak is longer than 20 characters$"):
        await engine.synthesize("x" * 21, VoiceChoice())
    with pytest.raises(ValueError, match=r"^text to speak is empty$"):
        await engine.synthesize("  ", VoiceChoice())


async def test_missing_engine() -> None:
    engine = EspeakEngine("no-such-espeak-binary")
    message = r"^text-to-speech is unavailable: 'no-such-espeak-binary' not found \(install"
    with pytest.raises(SpeechUnavailableError, match=message):
        await engine.synthesize("hello", VoiceChoice())
    with pytest.raises(SpeechUnavailableError, match=message):
        engine.voices()


def fake_espeak(tmp_path: Path, speak: str) -> str:
    """A stand-in espeak-ng that lists one voice and runs `speak` to synthesize."""
    script = tmp_path / "fake-espeak"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --voices) echo 'Pty Language Age/Gender VoiceName File Other Languages';\n"
        "    echo ' 5  en-us  --/M  English_(America)  gmw/en-US  (en 3)'; exit 0;;\n"
        "  --voices=variant) exit 0;;\n"
        "esac\n" + speak + "\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_synthesis_timeout_kills_the_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    engine = EspeakEngine(fake_espeak(tmp_path, f"echo $$ > {pidfile}; exec sleep 30"), timeout=0.5)
    with pytest.raises(SpeechError, match=r"^espeak-ng took longer than 0\.5 s$"):
        await engine.synthesize("hello", VoiceChoice())
    assert gone(int(pidfile.read_text()))


async def test_cancelled_synthesis_kills_the_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    engine = EspeakEngine(fake_espeak(tmp_path, f"echo $$ > {pidfile}; exec sleep 30"))
    task = asyncio.create_task(engine.synthesize("hello", VoiceChoice()))
    while not pidfile.exists() or not pidfile.read_text().strip():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(int(pidfile.read_text()))


@pytest.mark.parametrize(
    ("speak", "message"),
    [
        (
            "echo 'something broke' >&2; exit 3",
            r"^espeak-ng failed \(exit status 3\): something broke$",
        ),
        (
            "cat >/dev/null; echo 'Error: The specified espeak-ng voice does not exist.' >&2",
            r"^espeak-ng failed \(exit status 0\): Error: The specified espeak-ng voice",
        ),
        ("exit 0", r"^espeak-ng failed \(exit status 0\): no audio produced$"),
        ("echo 'not a wav'", "^espeak-ng output is not a WAV stream$"),
    ],
)
async def test_engine_failures(tmp_path: Path, speak: str, message: str) -> None:
    engine = EspeakEngine(fake_espeak(tmp_path, speak))
    with pytest.raises(SpeechError, match=message):
        await engine.synthesize("hello", VoiceChoice())


async def test_text_reaches_espeak_on_stdin_only(tmp_path: Path) -> None:
    args, text = tmp_path / "args", tmp_path / "text"
    engine = EspeakEngine(
        fake_espeak(tmp_path, f'echo "$@" > {args}; cat > {text}; exit 1'), speed=140
    )
    with pytest.raises(SpeechError):
        await engine.synthesize("-v de héllo", VoiceChoice("en-US"))
    assert args.read_text().split() == [
        "-b",
        "1",
        "--stdout",
        "--stdin",
        "-v",
        "en-us",
        "-s",
        "140",
    ]
    assert text.read_text(encoding="utf-8") == "-v de héllo"


# --- the cache --------------------------------------------------------------------------------


class FakeEngine:
    """Resolves like a real engine (case-folding) and counts syntheses."""

    def __init__(self, samples: int = 800, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, VoiceChoice]] = []
        self.samples = samples
        self.delay = delay
        self.fail: Exception | None = None

    def voices(self) -> list[Voice]:
        return [Voice("en-gb", "English")]

    async def resolve(self, choice: VoiceChoice) -> str:
        return (choice.voice or choice.language or "en-gb").lower().replace("uk", "gb")

    async def synthesize(self, text: str, voice: VoiceChoice) -> npt.NDArray[np.int16]:
        self.calls.append((text, voice))
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return np.full(self.samples, len(self.calls), dtype=np.int16)


async def test_cache_hits_by_text_and_resolved_voice() -> None:
    engine = FakeEngine()
    cache = SpeechCache(engine)
    first = await cache.synthesize("hello", VoiceChoice("en-UK"))
    again = await cache.synthesize("hello", VoiceChoice("EN-GB"))  # another spelling
    assert again is first
    assert not first.flags.writeable  # shared: nobody may change it
    other = await cache.synthesize("hello", VoiceChoice("de"))
    assert other is not first
    assert engine.calls == [
        ("hello", VoiceChoice(voice="en-gb")),
        ("hello", VoiceChoice(voice="de")),
    ]
    assert (cache.hits, cache.misses, len(cache), cache.samples) == (1, 2, 2, 1600)
    assert cache.voices() == engine.voices()
    assert await cache.resolve(VoiceChoice("en-UK")) == "en-gb"


async def test_concurrent_identical_requests_share_one_synthesis() -> None:
    engine = FakeEngine(delay=0.05)
    cache = SpeechCache(engine)
    results = await asyncio.gather(
        *(cache.synthesize("hello", VoiceChoice("en-UK")) for _ in range(5)),
        cache.synthesize("bye", VoiceChoice("en-UK")),
    )
    assert len(engine.calls) == 2
    assert all(r is results[0] for r in results[:5])
    assert results[5] is not results[0]


async def test_cache_evicts_least_recently_used_by_samples() -> None:
    engine = FakeEngine(samples=1000)
    cache = SpeechCache(engine, max_samples=2500)
    await cache.synthesize("a", VoiceChoice())
    await cache.synthesize("b", VoiceChoice())
    await cache.synthesize("a", VoiceChoice())  # a is now the most recent
    await cache.synthesize("c", VoiceChoice())  # b goes
    assert (len(cache), cache.samples) == (2, 2000)
    await cache.synthesize("a", VoiceChoice())
    await cache.synthesize("b", VoiceChoice())
    assert [text for text, _ in engine.calls] == ["a", "b", "c", "b"]
    cache.clear()
    assert (len(cache), cache.samples) == (0, 0)


async def test_audio_larger_than_the_cache_is_not_kept() -> None:
    cache = SpeechCache(FakeEngine(samples=3000), max_samples=2500)
    await cache.synthesize("long", VoiceChoice())
    assert (len(cache), cache.samples) == (0, 0)


async def test_failures_reach_every_waiter_and_are_not_cached() -> None:
    engine = FakeEngine(delay=0.02)
    engine.fail = SpeechError("boom")
    cache = SpeechCache(engine)
    results = await asyncio.gather(
        cache.synthesize("x", VoiceChoice()),
        cache.synthesize("x", VoiceChoice()),
        return_exceptions=True,
    )
    assert [str(r) for r in results] == ["boom", "boom"]
    assert len(engine.calls) == 1
    engine.fail = None
    assert len(await cache.synthesize("x", VoiceChoice())) == 800
    assert len(engine.calls) == 2


async def test_one_waiter_giving_up_does_not_cancel_the_others() -> None:
    engine = FakeEngine(delay=0.05)
    cache = SpeechCache(engine)
    impatient = asyncio.create_task(cache.synthesize("x", VoiceChoice()))
    patient = asyncio.create_task(cache.synthesize("x", VoiceChoice()))
    await asyncio.sleep(0.01)
    impatient.cancel()
    pcm = await patient
    assert len(pcm) == 800 and impatient.cancelled()
    assert len(engine.calls) == 1 and len(cache) == 1


@needs_espeak
async def test_cache_over_espeak() -> None:
    cache = SpeechCache(EspeakEngine())
    first = await cache.synthesize("balance one dollar", VoiceChoice("en-UK"))
    second = await cache.synthesize("balance one dollar", VoiceChoice("en_gb"))
    assert second is first and cache.hits == 1
