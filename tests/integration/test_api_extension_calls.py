"""API extensions driven by OzML, with real phones: an IVR answering calls to an API
extension, the `Call` command placing a call from one, and `Reject`.

Prompts are tones (menu 700 Hz, choice 1000 Hz) and speech; what the phone heard is read
from its recording, so barge-in (a key stopping the menu) shows as a shortened menu tone.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import time

import numpy as np
import soundfile as sf

from peers.flows import (
    PbxFactory,
    PhoneFactory,
    SippFactory,
    finish,
    no_calls_left,
    start_callee,
    wait_for_state,
)
from peers.pbx import PbxProcess
from peers.tones import read_wav
from peers.webhook import WebServer

RATE = 8000
MENU = 700.0
CHOICE = 1000.0
TONE_A = 1500.0
TONE_B = 2000.0
BLOCK = 800


def tone_wav(frequency: float, seconds: float) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    out = io.BytesIO()
    sf.write(out, 0.4 * np.sin(2 * np.pi * frequency * t), RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def seconds_with(samples: np.ndarray, tone: float) -> float:
    count = len(samples) // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    at = 2.0 * np.abs(np.fft.rfft(blocks, axis=1)[:, round(tone * BLOCK / RATE)]) ** 2 / BLOCK**2
    total = np.mean(blocks * blocks, axis=1)
    share = np.where(total > 1e-9, at / np.maximum(total, 1e-12), 0.0)
    return float((share > 0.1).sum()) * BLOCK / RATE


def prompts(pbx: PbxProcess) -> None:
    media = pbx.data_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    (media / "menu.wav").write_bytes(tone_wav(MENU, 4.0))
    (media / "choice.wav").write_bytes(tone_wav(CHOICE, 1.5))


def phone(pbx: PbxProcess, make_phone: PhoneFactory, ext: str, tone: float) -> object:
    pbx.add_sip_extension(ext, f"pw-{ext}")
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=f"pw-{ext}")


IVR = b"""<?xml version="1.0"?>
<Response>
  <UserInput Timeout="8" Repeat="true">
    <InitialCommands><Play>menu.wav</Play></InitialCommands>
    <Inputs>
      <Input Key="1"><Play>choice.wav</Play><Hangup></Hangup></Input>
      <Input Key="2"><BlindTransfer>2000</BlindTransfer></Input>
    </Inputs>
  </UserInput>
</Response>"""


def test_ivr_answers_plays_a_menu_and_follows_the_key(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx)
    web.replies["/incoming"] = IVR
    pbx.add_api_extension("9994", web.url("/incoming?app=ivr"))
    a = phone(pbx, make_phone, "1000", TONE_A)
    a.dial(f"sip:9994@{pbx.sip_address}")  # type: ignore[attr-defined]
    a.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    note = web.wait_for("IncomingCall")
    assert note.path == "/incoming?app=ivr"
    fields = dict(note.fields)
    assert (fields["ApiExtension"], fields["Caller"], fields["Dialed"]) == ("9994", "1000", "9994")
    call = wait_for_state(pbx, "InCall")
    assert (call["CallId"], call["Source"], call["Destination"]) == (
        fields["CallId"],
        "1000",
        "9994",
    )
    time.sleep(1.5)
    a.send_dtmf("1")  # type: ignore[attr-defined]
    a.wait_for_event("CALL_CLOSED", 15)  # the script hangs up after the choice
    no_calls_left(pbx)
    heard, _ = read_wav(a.received_recording())  # type: ignore[attr-defined]
    menu = seconds_with(heard, MENU)
    assert 0.8 <= menu <= 3.0, f"menu heard {menu:.1f} s: the key should cut it short"
    assert 1.2 <= seconds_with(heard, CHOICE) <= 1.8
    history = pbx.api("GetCallHistory", CallId=fields["CallId"])
    assert history.root.findtext("NumberOfCalls") == "1", history.text
    assert history.root.findtext("Calls/Call/Destination") == "9994", history.text


SPOKEN_MENU = b"""<Response>
  <UserInput Timeout="8" Repeat="true">
    <InitialCommands><Speak>For sales press one. For support press two.</Speak></InitialCommands>
    <Inputs><Input Key="2"><BlindTransfer>2000</BlindTransfer></Input></Inputs>
  </UserInput>
</Response>"""


def test_ivr_transfers_the_caller_on_key_two(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    web.replies["/incoming"] = SPOKEN_MENU
    pbx.add_api_extension("9994", web.url("/incoming"))
    a = phone(pbx, make_phone, "1000", TONE_A)
    b = phone(pbx, make_phone, "2000", TONE_B)
    a.dial(f"sip:9994@{pbx.sip_address}")  # type: ignore[attr-defined]
    a.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    time.sleep(1.0)
    a.send_dtmf("2")  # type: ignore[attr-defined]
    b.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("1000", "2000")
    time.sleep(2.0)
    a.hangup()  # type: ignore[attr-defined]
    b.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)
    heard, _ = read_wav(b.received_recording())  # type: ignore[attr-defined]
    assert seconds_with(heard, TONE_A) >= 1.0
    menu, _ = read_wav(a.received_recording())  # type: ignore[attr-defined]
    first = menu[: int(0.9 * RATE)]  # before the key: the spoken menu
    spectrum = np.abs(np.fft.rfft(first)) ** 2
    freqs = np.fft.rfftfreq(len(first), 1 / RATE)
    speech_band = spectrum[(freqs > 100) & (freqs < 3400)].sum() / max(spectrum.sum(), 1e-12)
    assert np.sqrt(np.mean(first**2)) > 0.01 and speech_band > 0.9


def test_reject_refuses_the_call_without_answering(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    web.replies["/incoming"] = b"<Response><Reject></Reject><Speak>never</Speak></Response>"
    pbx.add_api_extension("9994", web.url("/incoming"))
    a = phone(pbx, make_phone, "1000", TONE_A)
    a.dial(f"sip:9994@{pbx.sip_address}")  # type: ignore[attr-defined]
    closed = a.wait_for_event("CALL_CLOSED", 15)  # type: ignore[attr-defined]
    assert "486" in str(closed), closed
    assert not a.events("CALL_ESTABLISHED")  # type: ignore[attr-defined]
    no_calls_left(pbx)
    # no URL at all: the call is refused as unavailable
    pbx.add_api_extension("9995")
    a.dial(f"sip:9995@{pbx.sip_address}")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while len(a.events("CALL_CLOSED")) < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
    assert "480" in str(a.events("CALL_CLOSED")[-1])  # type: ignore[attr-defined]


def test_call_command_places_a_call_run_by_ozml(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx)
    web.replies["/connected"] = (
        b"<Response><Play>choice.wav</Play><Speak>Thank you for calling.</Speak></Response>"
    )
    pbx.add_api_extension("9994")
    b = phone(pbx, make_phone, "2000", TONE_B)
    assert (pbx.api("Call", Dialed="2000", ApiExtension="9990").code, "unknown extension") == (
        401,
        "unknown extension",
    )
    missing = pbx.api("Call", Dialed="5555", ApiExtension="9994")
    assert (missing.code, missing.message) == (
        402,
        "Call connect to '5555' failed with result state 'NotFound'",
    )
    result = pbx.api(
        "Call",
        Dialed="2000",
        ApiExtension="9994",
        CallerId="3000",
        CallerDisplayName="Help desk",
        Url=web.url("/connected"),
    )
    assert result.code == 200, result.text
    b.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("9994", "2000")
    fields = dict(web.wait_for("CallConnected").fields)
    assert (fields["CallId"], fields["ApiExtension"], fields["Dialed"]) == (
        call["CallId"],
        "9994",
        "2000",
    )
    assert fields["CallerId"] == "3000"
    b.wait_for_event("CALL_CLOSED", 20)  # end of script: hung up
    no_calls_left(pbx)
    heard, _ = read_wav(b.received_recording())  # type: ignore[attr-defined]
    assert 1.2 <= seconds_with(heard, CHOICE) <= 1.8
    speech = heard[int(2.0 * RATE) :]
    assert np.sqrt(np.mean(speech**2)) > 0.01  # the Speak after the tone


def states_of(web: WebServer, call_id: str) -> list[str]:
    return [
        dict(n.fields)["CallState"]
        for n in list(web.received)
        if ("NotificationName", "CallChanged") in n.fields and ("CallId", call_id) in n.fields
    ]


def wait_states(web: WebServer, call_id: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(states_of(web, call_id)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return states_of(web, call_id)


def test_call_changed_reports_every_state_in_order(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    pbx = start_pbx(config={"http_api": {"call_changed_url": web.url("/changed")}})
    a = phone(pbx, make_phone, "1000", TONE_A)
    b = phone(pbx, make_phone, "2000", TONE_B)
    a.dial(f"sip:2000@{pbx.sip_address}")  # type: ignore[attr-defined]
    b.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    call_id = wait_for_state(pbx, "InCall")["CallId"]
    assert pbx.api("Hold", CallId=call_id).code == 200
    wait_for_state(pbx, "Hold")
    assert pbx.api("Unhold", CallId=call_id).code == 200
    wait_for_state(pbx, "InCall")
    a.hangup()  # type: ignore[attr-defined]
    b.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)
    expected = ["Ringing", "Answered", "InCall", "Hold", "InCall", "Completed"]
    assert wait_states(web, call_id, len(expected)) == expected
    first = next(n for n in web.received if ("CallId", call_id) in n.fields)
    fields = dict(first.fields)
    assert first.fields[0] == ("NotificationName", "CallChanged")
    assert (fields["Source"], fields["Destination"], fields["Dialed"]) == ("1000", "2000", "2000")
    assert "T" in fields["StartTime"] and fields["RingDuration"].isdigit()


def test_call_changed_reply_runs_third_party_ozml(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    pbx = start_pbx(config={"http_api": {"call_changed_url": web.url("/changed")}})
    web.replies["/changed"] = b"<Response><Hangup></Hangup></Response>"
    a = phone(pbx, make_phone, "1000", TONE_A)
    phone(pbx, make_phone, "2000", TONE_B).set_answermode("manual")  # type: ignore[attr-defined]
    a.dial(f"sip:2000@{pbx.sip_address}")  # type: ignore[attr-defined]
    a.wait_for_event("CALL_CLOSED", 15)  # type: ignore[attr-defined]
    no_calls_left(pbx)
    call_id = dict(web.wait_for("CallChanged").fields)["CallId"]
    assert wait_states(web, call_id, 2) == ["Ringing", "Cancelled"]


def test_an_unusable_reply_ends_the_call_with_the_error_tone_and_notification(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    web.replies["/connected"] = b"<<<this is not XML at all"
    pbx.add_api_extension("9994")
    b = phone(pbx, make_phone, "2000", TONE_B)
    result = pbx.api(
        "Call",
        Dialed="2000",
        ApiExtension="9994",
        Url=web.url("/connected"),
        ErrorUrl=web.url("/error"),
    )
    assert result.code == 200, result.text
    b.wait_for_event("CALL_CLOSED", 20)  # type: ignore[attr-defined]
    no_calls_left(pbx)
    fields = dict(web.wait_for("Error").fields)
    assert (fields["ApiExtension"], fields["Dialed"], fields["State"]) == ("9994", "2000", "Error")
    heard, _ = read_wav(b.received_recording())  # type: ignore[attr-defined]
    for tone in (950.0, 1400.0, 1800.0):  # the special information tone
        assert seconds_with(heard, tone) >= 0.2, tone


def test_routing_interception_chains_destinations(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    pbx = start_pbx(config={"http_api": {"route_interception_url": web.url("/route")}})
    web.replies["/route"] = [
        b'<Response><Route Destination="2000" RingTime="3"/></Response>',
        b"<Response><Route RingTime='20'>3000</Route></Response>",
    ]
    a = phone(pbx, make_phone, "1000", TONE_A)
    b = phone(pbx, make_phone, "2000", TONE_B)
    b.set_answermode("manual")  # type: ignore[attr-defined]
    c = phone(pbx, make_phone, "3000", 2500.0)
    a.dial(f"sip:5555@{pbx.sip_address}")  # nobody has 5555: the application routes it
    c.wait_for_event("CALL_ESTABLISHED", 20)  # type: ignore[attr-defined]
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("1000", "3000")
    asks = [dict(n.fields) for n in web.received if n.path == "/route"]
    assert [(f["LastCallState"], f["LastCalledExtension"]) for f in asks] == [
        ("Calling", ""),
        ("NoAnswer", "2000"),
    ]
    assert {f["OriginalDialedNumber"] for f in asks} == {"5555"}
    assert {f["CallerExtension"] for f in asks} == {"1000"}
    assert b.events("CALL_INCOMING")  # type: ignore[attr-defined]  # 2000 rang first
    a.hangup()  # type: ignore[attr-defined]
    c.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)


def test_routing_interception_rejects_or_leaves_it_to_the_dial_plan(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    pbx = start_pbx(config={"http_api": {"route_interception_url": web.url("/route")}})
    web.replies["/route"] = [b"<Response><Route Destination=''/></Response>", b""]
    a = phone(pbx, make_phone, "1000", TONE_A)
    c = phone(pbx, make_phone, "3000", 2500.0)
    a.dial(f"sip:3000@{pbx.sip_address}")  # type: ignore[attr-defined]
    closed = a.wait_for_event("CALL_CLOSED", 15)  # type: ignore[attr-defined]
    assert "486" in str(closed), closed
    assert not c.events("CALL_INCOMING")  # type: ignore[attr-defined]
    no_calls_left(pbx)
    a.dial(f"sip:3000@{pbx.sip_address}")  # empty reply: the dial plan rings 3000
    c.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    a.hangup()  # type: ignore[attr-defined]
    c.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)


def test_notifications_are_signed_when_a_secret_is_configured(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    secret = "k3y-for-tests"
    pbx = start_pbx(
        config={
            "http_api": {"call_changed_url": web.url("/changed")},
            "notifications": {"secret": secret},
        }
    )
    a = phone(pbx, make_phone, "1000", TONE_A)
    b = phone(pbx, make_phone, "2000", TONE_B)
    a.dial(f"sip:2000@{pbx.sip_address}")  # type: ignore[attr-defined]
    b.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    a.hangup()  # type: ignore[attr-defined]
    b.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)
    note = web.wait_for("CallChanged")
    headers = {k.lower(): v for k, v in note.headers.items()}
    timestamp = headers["x-pypbx-timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + note.body, hashlib.sha256)
    assert headers["x-pypbx-signature"] == f"sha256={expected.hexdigest()}"
    assert abs(int(timestamp) - time.time()) < 60


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Response><Speak>&lol3;</Speak></Response>"""


def test_hostile_replies_take_the_error_path_and_leave_other_calls_alone(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    prompts(pbx)
    web.replies["/bomb"] = BOMB
    web.replies["/huge"] = b"<Response>" + b"<Delay>1</Delay>" * 700_000 + b"</Response>"
    web.replies["/odd"] = b"<Response><Frobnicate/><Play>choice.wav</Play></Response>"
    pbx.add_api_extension("9994", web.url("/bomb"))
    pbx.add_api_extension("9995", web.url("/huge"))
    pbx.add_api_extension("9996", web.url("/odd"))
    a = phone(pbx, make_phone, "1000", TONE_A)
    b = phone(pbx, make_phone, "2000", TONE_B)
    c = phone(pbx, make_phone, "3000", 2500.0)
    a.dial(f"sip:2000@{pbx.sip_address}")  # type: ignore[attr-defined]
    b.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    for attempt, number in enumerate(("9994", "9995"), start=1):  # refused: 480
        c.dial(f"sip:{number}@{pbx.sip_address}")  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while len(c.events("CALL_CLOSED")) < attempt and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
        assert "480" in str(c.events("CALL_CLOSED")[-1]), c.events()  # type: ignore[attr-defined]
    c.dial(f"sip:9996@{pbx.sip_address}")  # an unknown verb is skipped, the rest runs
    c.wait_for_event("CALL_ESTABLISHED", 15)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while len(c.events("CALL_CLOSED")) < 3 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
    assert len(c.events("CALL_CLOSED")) == 3  # type: ignore[attr-defined]
    heard_c, _ = read_wav(c.received_recording())  # type: ignore[attr-defined]
    assert 1.2 <= seconds_with(heard_c, CHOICE) <= 1.8
    # the call between 1000 and 2000 went on undisturbed all along
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("1000", "2000")
    a.hangup()  # type: ignore[attr-defined]
    b.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)
    heard_b, _ = read_wav(b.received_recording())  # type: ignore[attr-defined]
    assert seconds_with(heard_b, TONE_A) >= len(heard_b) / RATE - 1.0


def test_routing_interception_is_asked_again_after_a_busy_destination(
    start_pbx: PbxFactory, make_phone: PhoneFactory, web: WebServer, sipp: SippFactory
) -> None:
    pbx = start_pbx(config={"http_api": {"route_interception_url": web.url("/route")}})
    web.replies["/route"] = [
        b'<Response><Route Destination="2000"/></Response>',
        b'<Response><Route Destination="3000"/></Response>',
    ]
    pbx.add_sip_extension("2000", "pw-2000")
    busy = start_callee(pbx, sipp, "uas_busy", "2000", "pw-2000")
    a = phone(pbx, make_phone, "1000", TONE_A)
    c = phone(pbx, make_phone, "3000", 2500.0)
    a.dial(f"sip:700@{pbx.sip_address}")  # type: ignore[attr-defined]
    c.wait_for_event("CALL_ESTABLISHED", 20)  # type: ignore[attr-defined]
    finish(busy)
    asks = [dict(n.fields) for n in web.received if n.path == "/route"]
    assert [(f["LastCallState"], f["LastCalledExtension"]) for f in asks] == [
        ("Calling", ""),
        ("Busy", "2000"),
    ]
    a.hangup()  # type: ignore[attr-defined]
    c.wait_for_event("CALL_CLOSED", 10)  # type: ignore[attr-defined]
    no_calls_left(pbx)


def test_one_api_extension_calls_another(pbx: PbxProcess, web: WebServer) -> None:
    """Both ends of the call are in the agent under one CallId; each script acts on its own
    end (the callee's IncomingCall answers the incoming side, not the caller's)."""
    web.replies["/incoming"] = b"<Response><Delay>2</Delay><Hangup/></Response>"
    web.replies["/connected"] = b"<Response><Delay>10</Delay></Response>"
    pbx.add_api_extension("9994")
    pbx.add_api_extension("9995", web.url("/incoming"))
    result = pbx.api("Call", Dialed="9995", ApiExtension="9994", Url=web.url("/connected"))
    assert result.code == 200, result.text
    incoming = dict(web.wait_for("IncomingCall").fields)
    assert (incoming["ApiExtension"], incoming["Caller"]) == ("9995", "9994")
    connected = dict(web.wait_for("CallConnected").fields)
    assert (connected["CallId"], connected["ApiExtension"]) == (incoming["CallId"], "9994")
    no_calls_left(pbx, timeout=15)  # the callee's script hung up after its Delay
