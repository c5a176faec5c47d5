"""OzML end to end: API-extension scripts and 3PCC replies run on real calls with baresip phones.

Every scenario is judged by what a phone actually heard (its recording), by the key events it
received, and by the notifications the test web server got. Prompts are pure tones of their
own frequency, so "which prompt, how long, in which order" is read off a spectrogram; speech
is compared with espeak-ng's own rendering of the expected text. The phones' microphones play
tones (1500 Hz caller, 2000 Hz callee) or silence, and an API extension itself is silent, so a
phone talking to one hears nothing but the script's prompts.
"""

from __future__ import annotations

import base64
import html
import io
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from peers.baresip import BaresipPhone
from peers.flows import PbxFactory, PhoneFactory, no_calls_left, wait_for_state
from peers.pbx import PbxProcess
from peers.tones import read_wav
from peers.webhook import Notification, WebServer

Samples = npt.NDArray[np.float64]

RATE = 8000
BLOCK = 800  # 100 ms
TONE_A = 1500.0  # the caller's microphone
TONE_B = 2000.0  # the callee's microphone
MENU = 700.0
CHOICE = 1000.0
AFTER = 2500.0
OTHER = 1200.0
NEVER = 3000.0  # a prompt the script must not reach


# ---------------------------------------------------------------- audio
def tone_wav(frequency: float, seconds: float, amplitude: float = 0.4) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    out = io.BytesIO()
    sf.write(out, amplitude * np.sin(2 * np.pi * frequency * t), RATE, format="WAV")
    return out.getvalue()


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
    return np.where(total > 1e-7, at / np.maximum(total, 1e-12), 0.0)


def seconds_with(samples: Samples, tone: float, share: float = 0.1) -> float:
    return float((shares(samples, tone) > share).sum()) * BLOCK / RATE


def span(samples: Samples, tone: float) -> tuple[float, float]:
    """(start, end) in seconds of the blocks dominated by `tone`; fails if there are none."""
    (blocks,) = np.nonzero(shares(samples, tone) > 0.5)
    assert len(blocks), f"{tone:g} Hz never heard"
    return blocks[0] * BLOCK / RATE, (blocks[-1] + 1) * BLOCK / RATE


def level(samples: Samples, start: float, end: float) -> float:
    part = samples[int(start * RATE) : int(end * RATE)]
    return float(np.sqrt(np.mean(part * part))) if len(part) else 0.0


def espeak(text: str, voice: str) -> Samples:
    """espeak-ng's rendering of `text` at 8 kHz, made independently of pypbx, without its
    leading and trailing silence (a phone stops recording as the call ends, which may be
    before the silence at the end of the last prompt has been heard)."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True
    ).stdout
    data, rate = sf.read(io.BytesIO(out), dtype="float64")
    speech = np.asarray(soxr.resample(data, rate, RATE), dtype=np.float64)
    (loud,) = np.nonzero(np.abs(speech) > 0.01)
    return speech[loud[0] : loud[-1] + 1]


def best_correlation(received: Samples, reference: Samples) -> tuple[float, float]:
    """Peak normalised cross-correlation of `reference` within `received`, and where (s).

    `received` is padded with silence: a phone stops recording as the call ends, so the
    tail of the last prompt may be cut by a few milliseconds."""
    received = np.concatenate((received, np.zeros(len(reference))))
    n = len(received) + len(reference)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(reference, size)), size)[
        : len(received) - len(reference) + 1
    ]
    power = np.concatenate(([0.0], np.cumsum(received * received)))
    energy = power[len(reference) :] - power[: len(power) - len(reference)]
    norm = np.sqrt(np.maximum(energy, 1e-12) * float(np.sum(reference * reference)))
    scores = corr / norm
    at = int(np.argmax(scores))
    return float(scores[at]), at / RATE


# ---------------------------------------------------------------- set-up
def prompts(pbx: PbxProcess, **files: tuple[float, float]) -> None:
    """Tone prompts in pypbx's media directory: name=(frequency, seconds) -> name.wav."""
    media = pbx.data_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    for name, (frequency, seconds) in files.items():
        (media / f"{name}.wav").write_bytes(tone_wav(frequency, seconds))


def extension(
    pbx: PbxProcess, make_phone: PhoneFactory, ext: str, tone: float, **kw: object
) -> BaresipPhone:
    pbx.add_sip_extension(ext, f"pw-{ext}")
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=f"pw-{ext}", **kw)


def silence(path: Path) -> Path:
    sf.write(path, np.zeros(RATE * 60), RATE, subtype="PCM_16")
    return path


def call_api_extension(
    pbx: PbxProcess, web: WebServer, make_phone: PhoneFactory, script: str
) -> tuple[BaresipPhone, str]:
    """Phone 1000 calls API extension 9994, whose IncomingCall reply is `script`; returns the
    phone (in the call) and the CallId."""
    web.replies["/incoming"] = script.encode()
    pbx.add_api_extension("9994", web.url("/incoming"))
    phone = extension(pbx, make_phone, "1000", TONE_A)
    phone.dial(f"sip:9994@{pbx.sip_address}")
    phone.wait_for_event("CALL_ESTABLISHED", 15)
    return phone, web.wait_for("IncomingCall").field("CallId")


def fetch(url: str, user: str | None = None, password: str | None = None) -> bytes:
    """GET a recording as an application would, with basic auth when `user` is given."""
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def pypbx_problems(pbx: PbxProcess) -> list[str]:
    """Log lines that betray a failure: errors, tracebacks, unretrieved task exceptions."""
    text = pbx.log_path.read_text(errors="replace")
    marks = (" ERROR ", " CRITICAL ", "Traceback", "exception was never retrieved")
    return [line for line in text.splitlines() if any(mark in line for mark in marks)]


# ---------------------------------------------------------------- 1. UserInput + DtmfEntered
def test_pin_entry_goes_to_dtmf_entered_and_the_script_continues_after_it(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, menu=(MENU, 3.0), choice=(CHOICE, 1.0), after=(AFTER, 1.0), never=(NEVER, 1.0))
    web.replies["/pin"] = b"<Response><Play>choice.wav</Play></Response>"
    script = f"""<Response>
      <UserInput Digits="4" Timeout="8" ForwardToUrl="{web.url("/pin?menu=main")}">
        <InitialCommands><Play>menu.wav</Play></InitialCommands>
        <Inputs><Input Key="9999"><Play>never.wav</Play></Input></Inputs>
      </UserInput>
      <Play>after.wav</Play>
      <Hangup/>
      <Play>never.wav</Play>
    </Response>"""
    a, call_id = call_api_extension(pbx, web, make_phone, script)
    time.sleep(1.0)
    a.send_dtmf("1234")
    a.wait_for_event("CALL_CLOSED", 15)
    no_calls_left(pbx)

    note = web.wait_for("DtmfEntered")
    assert note.path == "/pin?menu=main"
    assert note.fields[0] == ("NotificationName", "DtmfEntered")
    fields = dict(note.fields)
    assert (fields["DtmfDigits"], fields["CallId"]) == ("1234", call_id), fields
    assert (fields["ApiExtension"], fields["Caller"]) == ("9994", "1000"), fields
    assert len(web.named("DtmfEntered")) == 1

    sound = heard(a)
    menu, choice, after = span(sound, MENU), span(sound, CHOICE), span(sound, AFTER)
    assert 0.5 <= menu[1] - menu[0] <= 2.6, f"the first key should cut the menu short: {menu}"
    assert menu[1] <= choice[0] < after[0], (menu, choice, after)
    assert 0.8 <= seconds_with(sound, CHOICE) <= 1.3
    assert 0.8 <= seconds_with(sound, AFTER) <= 1.3
    assert seconds_with(sound, NEVER) == 0.0


# ---------------------------------------------------------------- 2. GoTo
def test_goto_replaces_the_rest_of_the_script(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, menu=(MENU, 3.0), choice=(CHOICE, 1.0), never=(NEVER, 1.0))
    # the GoTo target starts with the variables of the script that jumped (spec 5.5)
    web.replies["/next"] = b"<Response><Play>$next.wav</Play></Response>"
    script = f"""<Response>
      <Var id="next">choice</Var>
      <UserInput Timeout="6" Repeat="true">
        <InitialCommands><Play>menu.wav</Play></InitialCommands>
        <Inputs>
          <Input Key="5"><GoTo>{web.url("/next?step=2")}</GoTo><Play>never.wav</Play></Input>
        </Inputs>
      </UserInput>
      <Play>never.wav</Play>
    </Response>"""
    a, call_id = call_api_extension(pbx, web, make_phone, script)
    time.sleep(1.0)
    a.send_dtmf("5")
    # the target ends the script: hung up right after its prompt, no menu round again
    a.wait_for_event("CALL_CLOSED", 15)
    no_calls_left(pbx)

    (note,) = web.named("GoTo")
    assert note.path == "/next?step=2"
    fields = dict(note.fields)
    assert (fields["CallId"], fields["ApiExtension"], fields["Caller"]) == (call_id, "9994", "1000")
    sound = heard(a)
    menu, choice = span(sound, MENU), span(sound, CHOICE)
    assert menu[1] <= choice[0] and menu[1] - menu[0] <= 2.6, (menu, choice)
    assert 0.8 <= seconds_with(sound, CHOICE) <= 1.3
    assert seconds_with(sound, NEVER) == 0.0
    assert seconds_with(sound[int(choice[1] * RATE) :], MENU) == 0.0  # the menu did not resume


# ---------------------------------------------------------------- 3. Record + RecordCompleted
def test_record_stops_on_a_finish_digit_and_its_reply_runs_inline(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, beep=(CHOICE, 0.5), thanks=(MENU, 1.0), after=(AFTER, 1.0))
    web.replies["/recorded"] = b"<Response><Play>thanks.wav</Play></Response>"
    script = f"""<Response>
      <Play>beep.wav</Play>
      <Record Format="wav" FinishDigits="#" Duration="20"
              FinishedUrl="{web.url("/recorded?box=7")}"></Record>
      <Play>after.wav</Play>
      <Hangup></Hangup>
    </Response>"""
    a, call_id = call_api_extension(pbx, web, make_phone, script)
    time.sleep(3.5)  # the caller "talks": its microphone tone goes into the recording
    a.send_dtmf("#")
    a.wait_for_event("CALL_CLOSED", 15)
    no_calls_left(pbx)

    note = web.wait_for("RecordCompleted")
    assert note.path == "/recorded?box=7"
    fields = dict(note.fields)
    assert (fields["CallId"], fields["ApiExtension"], fields["Format"]) == (call_id, "9994", "wav")
    assert (fields["Reason"], fields["FinishDigit"]) == ("FinishDigit", "#"), fields
    assert 2 <= int(fields["Duration"]) <= 4, fields
    url = fields["RecordURL"]
    assert url.startswith(f"http://127.0.0.1:{pbx.http_port}/recordings/{call_id}_"), url
    try:
        fetch(url)
        raise AssertionError("recording served without credentials")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    data, rate = sf.read(io.BytesIO(fetch(url, "admin", pbx.admin_password)), dtype="float64")
    assert rate == RATE and data.ndim == 1
    seconds = len(data) / RATE
    assert abs(seconds - int(fields["Duration"])) <= 1.0, seconds
    assert seconds_with(data, TONE_A) >= seconds - 1.0  # the caller's voice...
    for prompt in (CHOICE, MENU, AFTER):  # ...and nothing the script played
        assert seconds_with(data, prompt, 0.02) == 0.0, prompt

    sound = heard(a)
    beep, thanks, after = span(sound, CHOICE), span(sound, MENU), span(sound, AFTER)
    assert beep[1] <= thanks[0] < after[0], (beep, thanks, after)
    assert thanks[0] - beep[1] >= 2.5  # the recording (about 3.5 s) lies between them
    assert 0.8 <= seconds_with(sound, MENU) <= 1.3
    assert 0.8 <= seconds_with(sound, AFTER) <= 1.3


# ---------------------------------------------------------------- 4. Var / Array / ForEach
def test_variables_arrays_and_foreach_are_substituted(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, choice=(CHOICE, 1.0), menu=(MENU, 1.0), after=(AFTER, 1.0))
    script = """<Response>
      <Var id="first">choice</Var>
      <Play>$first.wav</Play>
      <Array id="tones"><Item>menu</Item><item>after</item></Array>
      <ForEach source="tones"><Play>$item.wav</Play></ForEach>
      <Var id="Name" Value="Alice"></Var>
      <Speak Language="en-US">Hello $name, goodbye</Speak>
    </Response>"""
    a, _ = call_api_extension(pbx, web, make_phone, script)
    a.wait_for_event("CALL_CLOSED", 20)  # end of script
    no_calls_left(pbx)

    sound = heard(a)
    first, second, third = span(sound, CHOICE), span(sound, MENU), span(sound, AFTER)
    assert first[1] <= second[0] + 0.1 and second[1] <= third[0] + 0.1, (first, second, third)
    for tone in (CHOICE, MENU, AFTER):
        assert 0.8 <= seconds_with(sound, tone) <= 1.3, tone
    speech = sound[int(third[1] * RATE) :]
    score, _ = best_correlation(speech, espeak("Hello Alice, goodbye", "en-us"))
    literal, _ = best_correlation(speech, espeak("Hello $name, goodbye", "en-us"))
    assert score > 0.8 and literal < score - 0.2, (score, literal)


# ---------------------------------------------------------------- 5. Speak Language, SendDTMF
def test_speak_in_two_languages_then_send_dtmf_to_the_phone(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    english = "Good morning, your order has been shipped"
    german = "Guten Morgen, Ihre Bestellung wurde verschickt"
    script = f"""<Response>
      <Speak Language="en-US">{english}</Speak>
      <Speak language="de">{german}</Speak>
      <SendDTMF Keys="12#" Party="caller"/>
      <Delay>1</Delay>
    </Response>"""
    a, _ = call_api_extension(pbx, web, make_phone, script)
    a.wait_for_event("CALL_CLOSED", 25)
    no_calls_left(pbx)

    keys = [e.get("param") for e in a.events("CALL_DTMF_START")]
    assert keys == ["1", "2", "#"], a.events()
    sound = heard(a)
    en_ref, de_ref = espeak(english, "en-us"), espeak(german, "de")
    en_score, en_at = best_correlation(sound, en_ref)
    de_score, de_at = best_correlation(sound, de_ref)
    assert en_score > 0.8 and de_score > 0.8, (en_score, de_score)
    assert en_at + len(en_ref) / RATE <= de_at + 0.1, (en_at, de_at)
    # it is the German voice speaking, not the English one reading German words
    assert best_correlation(sound, espeak(german, "en-us"))[0] < de_score - 0.2
    for at, ref in ((en_at, en_ref), (de_at, de_ref)):
        assert level(sound, at, at + len(ref) / RATE) > 0.02


# ---------------------------------------------------------------- 6. Call verb
def test_call_verb_in_an_ivr_places_calls_run_by_their_own_scripts(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, menu=(MENU, 4.0), choice=(CHOICE, 1.0), b=(OTHER, 1.5), c=(AFTER, 1.5))
    web.replies["/connected"] = b"<Response><Play>b.wav</Play></Response>"
    inline = html.escape("<Response><Play>c.wav</Play></Response>", quote=True)
    script = f"""<Response>
      <UserInput Timeout="8" Repeat="true">
        <InitialCommands><Play>menu.wav</Play></InitialCommands>
        <Inputs><Input Key="3">
          <Call Url="{web.url("/connected?who=b")}" ErrorUrl="{web.url("/error")}">2000</Call>
          <Call ResponseOzML="{inline}" CallerId="4321" CallerDisplayName="Desk">3000</Call>
          <Play>choice.wav</Play>
        </Input></Inputs>
      </UserInput>
    </Response>"""
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", 2200.0)
    a, call_id = call_api_extension(pbx, web, make_phone, script)
    time.sleep(1.0)
    a.send_dtmf("3")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    for phone in (a, b, c):
        phone.wait_for_event("CALL_CLOSED", 15)  # every script ends and hangs up
    no_calls_left(pbx)

    note = web.wait_for("CallConnected")
    assert note.path == "/connected?who=b"
    fields = dict(note.fields)
    assert (fields["ApiExtension"], fields["Dialed"]) == ("9994", "2000"), fields
    assert fields["CallId"] not in ("", call_id)
    assert len(web.named("CallConnected")) == 1  # ResponseOzML needs no request
    assert web.named("Error") == []
    assert "4321" in str(c.events()), c.events()
    assert 0.8 <= seconds_with(heard(a), CHOICE) <= 1.3
    assert 1.2 <= seconds_with(heard(b), OTHER) <= 1.8
    assert 1.2 <= seconds_with(heard(c), AFTER) <= 1.8
    assert seconds_with(heard(b), AFTER, 0.02) == seconds_with(heard(c), OTHER, 0.02) == 0.0
    history = pbx.api("GetCallHistory", Source="9994")
    assert history.root.findtext("NumberOfCalls") == "2", history.text


# ---------------------------------------------------------------- 7. 3PCC reply to CallChanged
def test_call_changed_reply_records_and_speaks_to_the_caller_only(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer, tmp_path: Path
) -> None:
    pbx = start_pbx(config={"http_api": {"call_changed_url": web.url("/changed")}})
    text = "Your call is being recorded for quality purposes"
    script = f"""<Response>
      <Record Format="wav" FinishedUrl="{web.url("/recorded")}"/>
      <Speak Party="caller" Language="en-US">{text}</Speak>
    </Response>""".encode()

    def on_change(note: Notification) -> bytes:
        return script if note.field("CallState") == "InCall" else b""

    web.handlers["/changed"] = on_change
    # the caller talks quietly (so speech on its line would show), the callee is silent
    quiet = tmp_path / "quiet.wav"
    quiet.write_bytes(tone_wav(TONE_A, 60.0, amplitude=0.1))
    a = extension(pbx, make_phone, "1000", TONE_A, source_wav=quiet)
    b = extension(pbx, make_phone, "2000", TONE_B, source_wav=silence(tmp_path / "s.wav"))
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    call_id = wait_for_state(pbx, "InCall")["CallId"]
    time.sleep(6.0)
    a.hangup()
    b.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)

    in_calls = [
        n for n in web.named("CallChanged") if n.field("CallState") == "InCall"
    ]  # the script ran exactly once
    assert [n.field("CallId") for n in in_calls] == [call_id]
    reference = espeak(text, "en-us")
    caller, callee = heard(a), heard(b)
    score, at = best_correlation(caller, reference)
    assert score > 0.8, score
    assert level(caller, at, at + len(reference) / RATE) > 0.02
    assert best_correlation(callee, reference)[0] < 0.3
    # the callee heard the caller's tone alone, block by block, while the caller was spoken to
    window = shares(callee[int(at * RATE) : int((at + len(reference) / RATE) * RATE)], TONE_A)
    assert len(window) > 10 and np.min(window) > 0.8, np.min(window)

    fields = dict(web.wait_for("RecordCompleted", 15).fields)
    assert (fields["CallId"], fields["Reason"], fields["Format"]) == (call_id, "Hangup", "wav")
    data, _ = sf.read(io.BytesIO(fetch(fields["RecordURL"], "admin", pbx.admin_password)))
    seconds = len(data) / RATE
    assert 4.0 <= seconds <= 8.0, seconds
    assert seconds_with(data, TONE_A) >= seconds - 1.0  # both phones, mixed...
    assert best_correlation(np.asarray(data, dtype=np.float64), reference)[0] < 0.3  # no prompt


# ---------------------------------------------------------------- 8. Delay, Hangup, hang-ups
def test_delay_and_hangup_order_the_script(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, one=(CHOICE, 1.0), two=(AFTER, 1.0), never=(NEVER, 1.0))
    script = """<Response>
      <Play>one.wav</Play>
      <Delay>2.5</Delay>
      <Play>two.wav</Play>
      <Hangup></Hangup>
      <Play>never.wav</Play>
    </Response>"""
    a, _ = call_api_extension(pbx, web, make_phone, script)
    a.wait_for_event("CALL_CLOSED", 15)
    no_calls_left(pbx)
    sound = heard(a)
    one, two = span(sound, CHOICE), span(sound, AFTER)
    assert 2.2 <= two[0] - one[1] <= 3.0, (one, two)  # the Delay, heard as silence
    assert level(sound, one[1] + 0.2, two[0] - 0.2) < 0.01
    assert 0.8 <= seconds_with(sound, AFTER) <= 1.3
    assert seconds_with(sound, NEVER) == 0.0
    assert len(sound) / RATE - two[1] < 1.0  # hung up right after the second prompt
    assert pypbx_problems(pbx) == []


def test_the_caller_hanging_up_stops_the_script(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx, long=(MENU, 6.0), beep=(CHOICE, 0.3))
    never = web.url("/never")
    scripts = {
        "9994": f"<Response><Play>long.wav</Play><GoTo>{never}</GoTo></Response>",
        "9995": f"""<Response>
          <Record Format="wav" FinishedUrl="{web.url("/recorded")}"/>
          <Play>long.wav</Play><GoTo>{never}</GoTo>
        </Response>""",
        "9996": f"""<Response>
          <UserInput Digits="1" Timeout="10" ForwardToUrl="{web.url("/slow")}">
            <InitialCommands><Play>beep.wav</Play></InitialCommands>
          </UserInput>
          <GoTo>{never}</GoTo>
        </Response>""",
    }
    for number, script in scripts.items():
        pbx.add_api_extension(number, web.url(f"/incoming{number}"))
        web.replies[f"/incoming{number}"] = script.encode()
    # the call is gone when RecordCompleted is answered: a call-bound reply has nothing to do
    web.replies["/recorded"] = b"<Response><Play>long.wav</Play><Hangup/></Response>"

    def slow(note: Notification) -> bytes:  # answered after the caller has hung up
        time.sleep(1.5)
        return f"<Response><GoTo>{never}</GoTo></Response>".encode()

    web.handlers["/slow"] = slow
    a = extension(pbx, make_phone, "1000", TONE_A)

    def call(number: str, keys: str = "") -> None:
        a.dial(f"sip:{number}@{pbx.sip_address}")
        a.wait_for_event("CALL_ESTABLISHED", 15)
        time.sleep(1.5)
        if keys:
            a.send_dtmf(keys)
        a.hangup()
        a.wait_for_event("CALL_CLOSED", 10)
        no_calls_left(pbx)

    call("9994")  # during a Play: the prompt stops, the GoTo after it never happens
    call("9995")  # during a Record: RecordCompleted says so (spec 4.3), nothing runs after it
    fields = dict(web.wait_for("RecordCompleted").fields)
    assert (fields["Reason"], fields["ApiExtension"]) == ("Hangup", "9995"), fields
    call("9996", "7")  # while DtmfEntered is being answered: its reply finds the call gone
    assert web.wait_for("DtmfEntered").field("DtmfDigits") == "7"

    time.sleep(5.0)  # a script still running would reach its GoTo by now
    names = [n.field("NotificationName") for n in web.received]
    assert names == ["IncomingCall"] * 2 + ["RecordCompleted", "IncomingCall", "DtmfEntered"]
    assert not [n for n in web.received if n.path == "/never"]
    no_calls_left(pbx)
    assert pypbx_problems(pbx) == []
