"""Play, Speak, Record and SendDTMF with real phones, checked in the audio that arrived.

Each baresip phone plays its own sine tone (1500 Hz caller, 2000 Hz callee) and records what
it hears. Prompts are other tones (1000 Hz) or speech; recordings made by pypbx are fetched
over HTTP like an application would, and analysed the same way.
"""

from __future__ import annotations

import base64
import io
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from peers.baresip import BaresipPhone
from peers.flows import (
    PbxFactory,
    PhoneFactory,
    SippFactory,
    caller,
    finish,
    no_calls_left,
    start_callee,
    wait_for_state,
)
from peers.pbx import PbxProcess
from peers.tones import read_wav
from peers.webhook import WebServer

TONE_A = 1500.0
TONE_B = 2000.0
PROMPT = 1000.0
RATE = 8000
BLOCK = 800  # 100 ms

Samples = npt.NDArray[np.float64]


# ---------------------------------------------------------------- audio analysis
def heard(phone: BaresipPhone) -> Samples:
    data, rate = read_wav(phone.received_recording())
    assert rate == RATE
    return data


def shares(samples: Samples, tone: float) -> Samples:
    """Per 100 ms block, the fraction of the block's energy at `tone`."""
    count = len(samples) // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    at = 2.0 * np.abs(np.fft.rfft(blocks, axis=1)[:, round(tone * BLOCK / RATE)]) ** 2 / BLOCK**2
    total = np.mean(blocks * blocks, axis=1)
    return np.where(total > 1e-9, at / np.maximum(total, 1e-12), 0.0)


def seconds_with(samples: Samples, tone: float, share: float = 0.1) -> float:
    return float((shares(samples, tone) > share).sum()) * BLOCK / RATE


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.4) -> Samples:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def audio_bytes(samples: Samples, rate: int, fmt: str, channels: int = 1) -> bytes:
    out = io.BytesIO()
    data = samples if channels == 1 else np.column_stack([samples] * channels)
    if fmt == "MP3":
        sf.write(out, data, rate, format="MP3", subtype="MPEG_LAYER_III")
    else:
        sf.write(out, data, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


# ---------------------------------------------------------------- set-up helpers
def extension(
    pbx: PbxProcess, make_phone: PhoneFactory, ext: str, tone: float, **kw: object
) -> BaresipPhone:
    password = f"pw-{ext}"
    pbx.add_sip_extension(ext, password)
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=password, **kw)


def establish(pbx: PbxProcess, a: BaresipPhone, b: BaresipPhone) -> str:
    a.dial(f"sip:{b.account.user}@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    return wait_for_state(pbx, "InCall", timeout=10)["CallId"]


def api_ok(pbx: PbxProcess, command: str, **params: str) -> None:
    result = pbx.api(command, **params)
    assert result.code == 200, result.text


def api_code(pbx: PbxProcess, command: str, **params: str) -> tuple[int, str]:
    result = pbx.api(command, **params)
    return result.code, result.message


def hang_up(pbx: PbxProcess, *phones: BaresipPhone) -> None:
    phones[0].hangup()
    for phone in phones:
        phone.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)


def fetch(url: str, user: str | None = None, password: str | None = None) -> bytes:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


# ---------------------------------------------------------------- Play
def test_play_reaches_only_the_chosen_party_over_the_conversation(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    media = pbx.data_dir / "media"
    (media / "prompts").mkdir(parents=True, exist_ok=True)
    # 16 kHz stereo: pypbx resamples and mixes down
    (media / "prompts" / "beep.wav").write_bytes(
        audio_bytes(sine(PROMPT, 2.5, 16000), 16000, "WAV", channels=2)
    )
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    time.sleep(1.5)
    api_ok(pbx, "Play", CallId=call_id, Party="caller", AudioFile="prompts/beep.wav")
    time.sleep(4.0)
    assert wait_for_state(pbx, "InCall")["CallId"] == call_id
    hang_up(pbx, a, b)

    caller, callee = heard(a), heard(b)
    assert 2.0 <= seconds_with(caller, PROMPT) <= 3.0, seconds_with(caller, PROMPT)
    prompt_blocks = shares(caller, PROMPT) > 0.1
    # mixed, not replaced: the caller heard the callee throughout the prompt
    assert np.mean(shares(caller, TONE_B)[prompt_blocks] > 0.1) > 0.9
    assert seconds_with(callee, PROMPT, 0.02) == 0.0
    assert seconds_with(callee, TONE_A) > 5.0


def test_play_from_a_url_and_refusals_that_leave_the_call_alone(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    pbx = start_pbx(config={"media": {"download_max_bytes": 200_000}})
    web.files["/prompt.mp3"] = audio_bytes(sine(PROMPT, 2.5, 22050), 22050, "MP3")
    web.files["/huge.wav"] = audio_bytes(sine(PROMPT, 20.0, 16000), 16000, "WAV")
    web.files["/text.wav"] = b"this is not audio at all" * 10
    (pbx.data_dir / "media" / "secret").mkdir(parents=True, exist_ok=True)
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)

    def refused(audio_file: str, reason: str) -> None:
        code, message = api_code(pbx, "Play", CallId=call_id, Party="all", AudioFile=audio_file)
        prefix = "Missing or invalid parameter 'AudioFile' for command 'Play': "
        assert code == 302 and message.startswith(prefix), (code, message)
        assert reason in message, message

    refused(web.url("/missing.wav"), "404")
    refused(web.url("/huge.wav"), "200000")
    refused(web.url("/text.wav"), "not a WAV or MP3 file")
    refused("nothing-here.wav", "not found")
    refused("../pypbx.sqlite3", "..")
    refused("/etc/passwd", "outside")
    refused("secret", "directory")
    refused("ftp://127.0.0.1/x.wav", "http")
    assert api_code(pbx, "Play", CallId=call_id, Party="both", AudioFile="x.wav")[0] == 302
    assert api_code(pbx, "Play", CallId="nOSuCH", Party="all", AudioFile="x.wav") == (
        601,
        "Call not found with ID 'nOSuCH'",
    )
    time.sleep(1.0)
    api_ok(pbx, "Play", CallId=call_id, Party="callee", AudioFile=web.url("/prompt.mp3"))
    time.sleep(3.5)
    hang_up(pbx, b, a)

    caller, callee = heard(a), heard(b)
    assert 2.0 <= seconds_with(callee, PROMPT) <= 3.0, seconds_with(callee, PROMPT)
    assert seconds_with(caller, PROMPT, 0.02) == 0.0
    # the refusals cost the call nothing: both heard each other from start to end
    assert seconds_with(caller, TONE_B) >= len(caller) / RATE - 1.0
    assert seconds_with(callee, TONE_A) >= len(callee) / RATE - 1.0


def test_play_repeat_until_timeout_and_a_new_play_replaces_the_old(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    media = pbx.data_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    (media / "short.wav").write_bytes(audio_bytes(sine(PROMPT, 0.5, 8000), 8000, "WAV"))
    (media / "other.wav").write_bytes(audio_bytes(sine(700.0, 1.0, 8000), 8000, "WAV"))
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    time.sleep(1.0)
    api_ok(
        pbx,
        "Play",
        CallId=call_id,
        Party="caller",
        AudioFile="short.wav",
        Repeat="true",
        Timeout="3",
    )
    time.sleep(4.0)
    # looping with no timeout, then replaced by another prompt
    api_ok(pbx, "Play", CallId=call_id, Party="caller", AudioFile="short.wav", Repeat="true")
    time.sleep(2.0)
    api_ok(pbx, "Play", CallId=call_id, Party="caller", AudioFile="other.wav")
    time.sleep(2.5)
    hang_up(pbx, a, b)

    caller = heard(a)
    prompt = seconds_with(caller, PROMPT)
    assert 4.3 <= prompt <= 5.7, prompt  # 3 s (Timeout) + about 2 s until replaced
    assert 0.7 <= seconds_with(caller, 700.0) <= 1.3
    assert seconds_with(caller, TONE_B) >= len(caller) / RATE - 1.0


# ---------------------------------------------------------------- Speak
def espeak_reference(text: str) -> Samples:
    """What espeak-ng says for `text`, at 8 kHz, made independently of pypbx."""
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", text], check=True, capture_output=True
    ).stdout
    data, rate = sf.read(io.BytesIO(out), dtype="float64")
    return np.asarray(soxr.resample(data, rate, RATE), dtype=np.float64)


def best_correlation(received: Samples, reference: Samples) -> tuple[float, int]:
    """Peak normalised cross-correlation of `reference` within `received`, and where."""
    n = len(received) + len(reference)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(reference, size)), size)[
        : len(received) - len(reference) + 1
    ]
    energy = np.convolve(received * received, np.ones(len(reference)), mode="valid")
    norm = np.sqrt(np.maximum(energy, 1e-12) * float(np.sum(reference * reference)))
    scores = corr / norm
    at = int(np.argmax(scores))
    return float(scores[at]), at


def test_speak_delivers_the_synthesised_speech_to_the_party(
    pbx: PbxProcess, make_phone: PhoneFactory, tmp_path: Path
) -> None:
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(RATE * 60), RATE, subtype="PCM_16")
    a = extension(pbx, make_phone, "1000", TONE_A, source_wav=silence)
    b = extension(pbx, make_phone, "2000", TONE_B, source_wav=silence)
    call_id = establish(pbx, a, b)
    text = "Your balance is twelve dollars and forty cents"
    assert api_code(pbx, "Speak", CallId=call_id, Party="caller", Text="") == (
        302,
        "Missing or invalid parameter 'Text' for command 'Speak'",
    )
    assert api_code(pbx, "Speak", CallId="nOSuCH", Text=text)[0] == 601
    time.sleep(0.5)
    api_ok(pbx, "Speak", CallId=call_id, Party="caller", Text=text, Language="en-US")
    time.sleep(5.0)
    # an unknown language falls back to the default voice instead of failing
    api_ok(pbx, "Speak", CallId=call_id, Party="callee", Text="hello", Language="xx-YY")
    time.sleep(1.5)
    hang_up(pbx, a, b)

    caller, callee = heard(a), heard(b)
    reference = espeak_reference(text)
    score, at = best_correlation(caller, reference)
    assert score > 0.8, f"speech received does not match espeak-ng's: {score:.2f}"
    speech = caller[at : at + len(reference)]
    assert np.sqrt(np.mean(speech**2)) > 0.02
    assert best_correlation(callee, reference)[0] < 0.3  # the callee heard only its own prompt
    assert np.sqrt(np.mean(callee**2)) > 0.005


# ---------------------------------------------------------------- SendDTMF, detection
def test_send_dtmf_reaches_the_phone_as_key_presses(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    assert api_code(pbx, "SendDTMF", CallId=call_id, Party="callee", Keys="12x")[0] == 302
    assert api_code(pbx, "SendDTMF", CallId="nOSuCH", Party="callee", Keys="1")[0] == 601
    api_ok(pbx, "SendDTMF", CallId=call_id, Party="callee", Keys="159#")
    deadline = time.monotonic() + 10
    while len(b.events("CALL_DTMF_START")) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    keys = [e.get("param") for e in b.events("CALL_DTMF_START")]
    assert keys == ["1", "5", "9", "#"], b.events()
    assert a.events("CALL_DTMF_START") == []  # only the chosen party
    api_ok(pbx, "Hold", CallId=call_id)
    wait_for_state(pbx, "Hold")
    assert api_code(pbx, "SendDTMF", CallId=call_id, Party="all", Keys="1") == (
        303,
        "Command 'SendDTMF' cannot be used here",
    )
    hang_up(pbx, a, b)


def record_until_digit(pbx: PbxProcess, call_id: str, web: WebServer) -> dict[str, str]:
    api_ok(
        pbx,
        "Record",
        CallId=call_id,
        Format="wav",
        FinishDigits="5#",
        FinishedURL=web.url("/recorded"),
    )
    note = web.wait_for("RecordCompleted", timeout=20)
    return dict(note.fields)


def test_phone_key_presses_are_detected_rfc4733(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    api_ok(
        pbx,
        "Record",
        CallId=call_id,
        Format="wav",
        FinishDigits="5#",
        FinishedURL=web.url("/recorded"),
    )
    time.sleep(2.0)
    a.send_dtmf("3")  # not a finish digit
    time.sleep(0.5)
    a.send_dtmf("#")
    fields = dict(web.wait_for("RecordCompleted", timeout=20).fields)
    assert (fields["Reason"], fields["FinishDigit"]) == ("FinishDigit", "#"), fields
    assert 2 <= int(fields["Duration"]) <= 4, fields
    # the press also went through to the other phone
    b.wait_for_event("CALL_DTMF_START", 5)
    assert [e.get("param") for e in b.events("CALL_DTMF_START")] == ["3", "#"]
    log = pbx.log_tail(400)
    assert "DTMF 3 from the caller (rfc4733)" in log and "DTMF # from the caller" in log
    hang_up(pbx, a, b)


def test_in_band_key_presses_are_detected(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer, tmp_path: Path
) -> None:
    pbx = start_pbx(config={"media": {"inband_dtmf": "always"}})
    # the caller's "microphone": its tone, then the key 5 as audio at 4 s, then the tone
    tone = sine(TONE_A, 60.0, RATE, 0.3)
    t = np.arange(int(0.12 * RATE)) / RATE
    key = 0.25 * (np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 1336 * t))
    tone[4 * RATE : 4 * RATE + len(key)] = key
    source = tmp_path / "keys.wav"
    sf.write(source, tone, RATE, subtype="PCM_16")
    a = extension(pbx, make_phone, "1000", TONE_A, source_wav=source)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    fields = record_until_digit(pbx, call_id, web)
    assert (fields["Reason"], fields["FinishDigit"]) == ("FinishDigit", "5"), fields
    assert "DTMF 5 from the caller (inband)" in pbx.log_tail(400)
    assert "from the callee (inband)" not in pbx.log_tail(400)  # music and tones are no keys
    hang_up(pbx, a, b)


# ---------------------------------------------------------------- Record
def test_record_wav_reports_and_serves_the_conversation(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    assert api_code(pbx, "Record", CallId=call_id, Format="ogg")[0] == 302
    assert api_code(pbx, "Record", CallId=call_id, RecordPath="../../etc")[0] == 302
    assert api_code(pbx, "Record", CallId="nOSuCH")[0] == 601
    api_ok(pbx, "Record", CallId=call_id, Format="WAV", FinishedUrl=web.url("/rec?app=1"))
    assert api_code(pbx, "Record", CallId=call_id) == (
        303,
        "Command 'Record' cannot be used here",
    )
    time.sleep(3.0)
    hang_up(pbx, a, b)

    note = web.wait_for("RecordCompleted")
    assert note.path == "/rec?app=1"
    assert note.fields[0] == ("NotificationName", "RecordCompleted")
    fields = dict(note.fields)
    assert (fields["CallId"], fields["Format"], fields["Reason"]) == (call_id, "wav", "Hangup")
    assert 2 <= int(fields["Duration"]) <= 4, fields
    url = fields["RecordURL"]
    assert url.startswith(f"http://127.0.0.1:{pbx.http_port}/recordings/{call_id}_"), url
    assert url.endswith(".wav")
    try:
        fetch(url)
        raise AssertionError("recording served without credentials")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    data, rate = sf.read(io.BytesIO(fetch(url, "admin", pbx.admin_password)), dtype="float64")
    assert rate == RATE and data.ndim == 1
    assert abs(len(data) / RATE - int(fields["Duration"])) <= 1.0
    assert seconds_with(data, TONE_A) >= len(data) / RATE - 1.0
    assert seconds_with(data, TONE_B) >= len(data) / RATE - 1.0


def test_record_stereo_mp3_puts_each_party_on_its_own_channel(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    api_ok(pbx, "Record", CallId=call_id, Stereo="true", FinishedURL=web.url("/rec"))
    time.sleep(3.0)
    hang_up(pbx, b, a)
    fields = dict(web.wait_for("RecordCompleted").fields)
    assert fields["Format"] == "mp3" and fields["RecordURL"].endswith(".mp3"), fields
    query = urllib.parse.urlencode({"Username": "admin", "Password": pbx.admin_password})
    data, rate = sf.read(io.BytesIO(fetch(f"{fields['RecordURL']}?{query}")), dtype="float64")
    assert rate == RATE and data.shape[1] == 2
    left, right = data[:, 0], data[:, 1]
    seconds = len(data) / RATE
    assert seconds_with(left, TONE_A) >= seconds - 1.0
    assert seconds_with(right, TONE_B) >= seconds - 1.0
    assert seconds_with(left, TONE_B, 0.02) == 0.0
    assert seconds_with(right, TONE_A, 0.02) == 0.0


def test_sip_info_key_presses_both_ways(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory
) -> None:
    """A phone without telephone-event gets SendDTMF as SIP INFO; an INFO key press from a
    phone is detected and passed on to the other phone (as RFC 4733 events there)."""
    pbx.add_sip_extension("2000", "pw-2000")
    uas = start_callee(pbx, sipp, "uas_info_dtmf", "2000", "pw-2000")
    a = extension(pbx, make_phone, "1000", TONE_A)
    a.dial(f"sip:2000@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    call_id = wait_for_state(pbx, "InCall")["CallId"]
    api_ok(pbx, "SendDTMF", CallId=call_id, Party="callee", Keys="4*")
    time.sleep(1.0)
    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    finish(uas)
    no_calls_left(pbx)

    b = extension(pbx, make_phone, "3000", TONE_B)
    pbx.add_sip_extension("1001", "pw-1001")
    run = caller(pbx, sipp, "uac_info_dtmf", "3000", "1001", "pw-1001", pause_ms=2500)
    finish(run.start())
    b.wait_for_event("CALL_DTMF_START", 5)
    assert [e.get("param") for e in b.events("CALL_DTMF_START")] == ["7"]
    assert "DTMF 7 from the caller (info)" in pbx.log_tail(400)
    b.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)


def test_a_recording_survives_pypbx_being_killed(pbx: PbxProcess, make_phone: PhoneFactory) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    api_ok(pbx, "Record", CallId=call_id, Format="mp3")
    time.sleep(4.0)
    pbx.kill()  # no clean shutdown: the WAV being written is left as it was
    a.hangup()
    pbx.start()  # repairs what the killed process left
    files = sorted((pbx.data_dir / "recordings").glob(f"{call_id}_*"))
    assert [f.suffix for f in files] == [".wav"], files
    data, rate = sf.read(files[0], dtype="float64")
    assert rate == RATE
    assert 2.5 <= len(data) / RATE <= 4.5, len(data) / RATE
    assert seconds_with(data, TONE_A) >= len(data) / RATE - 1.5
    assert seconds_with(data, TONE_B) >= len(data) / RATE - 1.5


def test_record_duration_and_record_path(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id = establish(pbx, a, b)
    api_ok(
        pbx,
        "Record",
        CallId=call_id,
        Format="wav",
        Duration="2",
        RecordPath="team/sales",
        FinishedURL=web.url("/rec"),
    )
    fields = dict(web.wait_for("RecordCompleted", timeout=10).fields)
    assert (fields["Reason"], fields["Duration"]) == ("Duration", "2"), fields
    assert f"/recordings/team/sales/{call_id}_" in fields["RecordURL"], fields
    assert wait_for_state(pbx, "InCall")["CallId"] == call_id  # the call goes on
    files = list((pbx.data_dir / "recordings" / "team" / "sales").glob("*.wav"))
    data, _ = sf.read(files[0], dtype="float64")
    assert abs(len(data) / RATE - 2.0) < 0.1
    api_ok(pbx, "Record", CallId=call_id, Format="wav")  # a finished recording frees the call
    hang_up(pbx, a, b)
