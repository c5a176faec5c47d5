"""BlindTransfer over the HTTP API with real phones: transfer, recall, refusals.

Each baresip phone plays its own sine tone (1500, 2000, 2500 Hz) and records what it hears.
The transferee stays in its SIP dialog through the transfer, so its one recording holds the
whole story: the transferor's tone, pypbx's ringback (425 Hz, 1 s on / 4 s off) while the
target rings, then the target's (or, after a recall, the transferor's) tone.

A recording grows with the audio received and ringback pauses may send nothing, so its time
axis does not follow the test's clock. The tests therefore read the start of a recording for
what was heard before the transfer and its end for what was heard after it, and look for
ringback anywhere in it.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from peers.baresip import BaresipPhone
from peers.flows import PbxFactory, PhoneFactory, no_calls_left, rtp_ports_held, wait_for_state
from peers.pbx import PbxProcess
from peers.tones import read_wav
from peers.webhook import WebServer

TONE_A = 1500.0
TONE_B = 2000.0
TONE_C = 2500.0
RINGBACK = 425.0
RATE = 8000
BLOCK = 1600  # 200 ms: whole periods of 425 Hz and of every phone tone (one FFT bin each)

Samples = npt.NDArray[np.float64]


# ---------------------------------------------------------------- audio analysis
def heard(phone: BaresipPhone) -> Samples:
    """What `phone` heard in its latest call (a closed call's recording is complete)."""
    data, rate = read_wav(phone.received_recording())
    assert rate == RATE, f"{phone.account.user}: recording at {rate} Hz"
    return data


def block_shares(samples: Samples, tone: float) -> Samples:
    """Per 200 ms block, the fraction of its energy at `tone` (0 for a silent block)."""
    count = len(samples) // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    at_tone = 2.0 * np.abs(np.fft.rfft(blocks, axis=1)[:, round(tone * BLOCK / RATE)]) ** 2
    total = np.sum(blocks * blocks, axis=1) * BLOCK
    return np.where(total > 1e-9, np.minimum(1.0, at_tone / np.maximum(total, 1e-12)), 0.0)


def tone_share(samples: Samples, tone: float) -> float:
    """Fraction (0..1) of the energy at `tone`: near 1 for that tone, near 0 without it."""
    count = len(samples) // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    at_tone = 2.0 * np.abs(np.fft.rfft(blocks, axis=1)[:, round(tone * BLOCK / RATE)]) ** 2
    total = float(np.sum(blocks * blocks)) * BLOCK
    return min(1.0, float(at_tone.sum()) / total) if total > 1e-9 else 0.0


def describe(samples: Samples) -> str:
    rms = float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0
    shares = ", ".join(
        f"{f:g} Hz {tone_share(samples, f):.3f}" for f in (RINGBACK, TONE_A, TONE_B, TONE_C)
    )
    return f"{len(samples) / RATE:.1f} s, rms {rms:.4f}, {shares}"


def assert_start_hears(phone: BaresipPhone, seconds: float, tone: float) -> None:
    """From 1 s into the recording, for `seconds`, `phone` heard `tone`."""
    data = heard(phone)
    chunk = data[RATE : int((1.0 + seconds) * RATE)]
    info = f"{phone.account.user} start: {describe(chunk)} (whole: {describe(data)})"
    assert len(chunk) >= int(seconds * RATE) - BLOCK, f"recording too short: {info}"
    assert tone_share(chunk, tone) > 0.7, info


def assert_end_hears(phone: BaresipPhone, seconds: float, tone: float) -> None:
    """The last `seconds` of the recording (minus 0.3 s of hang-up) are `tone`."""
    data = heard(phone)
    chunk = data[len(data) - int((seconds + 0.3) * RATE) : len(data) - int(0.3 * RATE)]
    info = f"{phone.account.user} end: {describe(chunk)} (whole: {describe(data)})"
    assert len(data) >= int((seconds + 0.3) * RATE), f"recording too short: {info}"
    assert tone_share(chunk, tone) > 0.7, info


def assert_heard_ringback(phone: BaresipPhone) -> None:
    """Somewhere in the recording at least 0.6 s of 425 Hz, and never more than ~1 s at once
    (the cadence is 1 s on, 4 s off)."""
    data = heard(phone)
    ringing = (block_shares(data, RINGBACK) > 0.5).tolist()
    longest = run = 0
    for on in ringing:
        run = run + 1 if on else 0
        longest = max(longest, run)
    info = f"{phone.account.user}: longest 425 Hz stretch {longest * BLOCK / RATE:.1f} s"
    assert sum(ringing) >= 3, f"no ringback: {info}; whole: {describe(data)}"
    assert longest <= 7, f"ringback not 1 s on / 4 s off: {info}"


# ---------------------------------------------------------------- set-up helpers
def extension(
    pbx: PbxProcess, make_phone: PhoneFactory, ext: str, tone: float, **kw: str
) -> BaresipPhone:
    """Add extension `ext` and register a baresip phone playing `tone` for it."""
    password = f"pw-{ext}"
    pbx.add_sip_extension(ext, password)
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=password, **kw)


def establish(pbx: PbxProcess, a: BaresipPhone, b: BaresipPhone) -> str:
    """A dials B (auto-answer); returns the CallId once both phones are in the call."""
    a.dial(f"sip:{b.account.user}@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    call = wait_for_state(pbx, "InCall", timeout=10)
    assert (call["Source"], call["Destination"]) == (a.account.user, b.account.user)
    return call["CallId"]


def transfer(pbx: PbxProcess, call_id: str, party: str, target: str) -> None:
    result = pbx.api(
        "BlindTransfer", auth=True, CallId=call_id, TransferorParty=party, Target=target
    )
    assert result.code == 200, result.text


def api_fails(pbx: PbxProcess, code: int, message: str, command: str, **params: str) -> None:
    """The command is refused with exactly this code and message."""
    result = pbx.api(command, auth=True, **params)
    assert (result.code, result.message) == (code, message), result.text


def new_call(pbx: PbxProcess, old_id: str, state: str, source: str, dest: str) -> str:
    """The one active call is a new call source -> dest in `state`; returns its CallId."""
    call = wait_for_state(pbx, state, timeout=15)
    assert call["CallId"] != old_id, f"transfer kept the original CallId: {call}"
    assert (call["Source"], call["Destination"]) == (source, dest), call
    return call["CallId"]


def assert_history(
    pbx: PbxProcess, old_id: str, new_id: str, new: tuple[str, str, str, str]
) -> None:
    """After stop(): exactly the original call 1000 -> 2000, ended TransferCompleted, and the
    new call (source, destination, dialed, state) that began when the original ended."""
    rows = {row.call_id: row for row in pbx.history()}
    listing = [str(row) for row in rows.values()]
    assert set(rows) == {old_id, new_id}, listing
    old_row, new_row = rows[old_id], rows[new_id]
    assert (old_row.source, old_row.destination, old_row.state) == (
        "1000",
        "2000",
        "TransferCompleted",
    ), listing
    assert old_row.answer_time is not None and old_row.end_time is not None, listing
    assert old_row.end_time <= new_row.start_time, listing
    got = (new_row.source, new_row.destination, new_row.dialed, new_row.state)
    assert got == new, listing


# ---------------------------------------------------------------- tests
def test_blind_transfer_connects_the_caller_to_the_target(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C, answermode="manual")
    old_id = establish(pbx, a, b)
    assert len(rtp_ports_held(pbx)) == 4, "two legs: an RTP and an RTCP port each"
    time.sleep(2.5)

    transfer(pbx, old_id, "callee", "3000")
    b.wait_for_event("CALL_CLOSED", 5)
    c.wait_for_event("CALL_INCOMING", 10)
    call_id = new_call(pbx, old_id, "Ringing", "1000", "3000")
    assert not a.events("CALL_CLOSED"), "the transferee was released"
    time.sleep(2.0)  # A hears the first 1 s burst of ringback
    c.command("accept")
    c.wait_for_event("CALL_ESTABLISHED", 10)
    assert new_call(pbx, old_id, "InCall", "1000", "3000") == call_id
    api_fails(pbx, 601, f"Call not found with ID '{old_id}'", "Hangup", CallId=old_id)
    time.sleep(3.5)

    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert len(a.events("CALL_ESTABLISHED")) == 1, "the transferee's call was replaced"

    assert_start_hears(a, 1.0, TONE_B)
    assert_start_hears(b, 1.0, TONE_A)
    assert_heard_ringback(a)
    assert_end_hears(a, 2.5, TONE_C)
    assert_end_hears(c, 2.5, TONE_A)

    assert pbx.stop() == 0
    assert_history(pbx, old_id, call_id, ("1000", "3000", "3000", "CallerHungUp"))
    new = {row.call_id: row for row in pbx.history()}[call_id]
    assert new.answer_time is not None and new.talk_duration >= 3.0, new


def test_busy_target_recalls_the_transferor(
    start_pbx: PbxFactory, make_phone: PhoneFactory
) -> None:
    pbx = start_pbx(config={"sip": {"ring_timeout": 4}})
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C, answermode="manual")
    old_id = establish(pbx, a, b)
    time.sleep(2.0)

    transfer(pbx, old_id, "callee", "3000")
    b.wait_for_event("CALL_CLOSED", 5)
    c.wait_for_event("CALL_INCOMING", 10)
    call_id = new_call(pbx, old_id, "Ringing", "1000", "3000")
    c.hangup()  # rejects the incoming call: busy
    c.wait_for_event("CALL_CLOSED", 5)

    b.wait_for_event("CALL_ESTABLISHED", 10)  # the recall, auto-answered
    assert new_call(pbx, old_id, "InCall", "1000", "2000") == call_id
    time.sleep(3.5)
    b.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert not c.events("CALL_ESTABLISHED")
    assert len(a.events("CALL_ESTABLISHED")) == 1, "the transferee's call was replaced"

    assert_start_hears(a, 1.0, TONE_B)
    assert_end_hears(a, 2.5, TONE_B)
    assert_end_hears(b, 2.5, TONE_A)  # B's newest recording: the recall

    assert pbx.stop() == 0
    assert_history(pbx, old_id, call_id, ("1000", "2000", "3000", "CalleeHungUp"))


def test_unanswered_target_and_recall_release_the_transferee(
    start_pbx: PbxFactory, make_phone: PhoneFactory
) -> None:
    pbx = start_pbx(config={"sip": {"ring_timeout": 4}})
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C, answermode="manual")
    old_id = establish(pbx, a, b)
    b.set_answermode("manual")

    transfer(pbx, old_id, "callee", "3000")
    b.wait_for_event("CALL_CLOSED", 5)
    c.wait_for_event("CALL_INCOMING", 10)
    call_id = new_call(pbx, old_id, "Ringing", "1000", "3000")
    c.wait_for_event("CALL_CLOSED", 8)  # ring timeout: pypbx cancels
    b.wait_for_event("CALL_INCOMING", 5)  # the recall
    assert new_call(pbx, old_id, "Ringing", "1000", "2000") == call_id
    b.wait_for_event("CALL_CLOSED", 8)  # nobody answers the recall either
    a.wait_for_event("CALL_CLOSED", 5)  # so the transferee gets a BYE
    no_calls_left(pbx)
    assert not b.events("CALL_ESTABLISHED")[1:] and not c.events("CALL_ESTABLISHED")
    assert_heard_ringback(a)

    assert pbx.stop() == 0
    assert_history(pbx, old_id, call_id, ("1000", "2000", "3000", "NotAnswered"))
    new = {row.call_id: row for row in pbx.history()}[call_id]
    assert new.answer_time is None and new.ring_duration >= 7.5, new


def test_blind_transfer_refusals_leave_the_call_alone(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B, answermode="manual")
    c = extension(pbx, make_phone, "3000", TONE_C)
    pbx.add_sip_extension("4000", "pw-4000")  # exists, but no phone registered
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_INCOMING", 15)
    call_id = wait_for_state(pbx, "Ringing")["CallId"]
    command = "BlindTransfer"
    api_fails(
        pbx,
        303,
        f"Command '{command}' cannot be used here",
        command,
        CallId=call_id,
        TransferorParty="callee",
        Target="3000",
    )
    b.command("accept")
    b.wait_for_event("CALL_ESTABLISHED", 10)
    a.wait_for_event("CALL_ESTABLISHED", 10)
    wait_for_state(pbx, "InCall")

    api_fails(
        pbx,
        601,
        "Call not found with ID 'nOSuCH'",
        command,
        CallId="nOSuCH",
        TransferorParty="callee",
        Target="3000",
    )
    bad = "Missing or invalid parameter '{}' for command 'BlindTransfer'"
    for params in (
        {"TransferorParty": "callee"},
        {"TransferorParty": "callee", "Target": ""},
        {"TransferorParty": "callee", "Target": "5999"},  # no such extension
        {"TransferorParty": "callee", "Target": "4000"},  # not registered
    ):
        api_fails(pbx, 302, bad.format("Target"), command, CallId=call_id, **params)
    for params in (
        {"Target": "3000"},
        {"Target": "3000", "TransferorParty": "all"},
        {"Target": "3000", "TransferorParty": "nobody"},
    ):
        api_fails(pbx, 302, bad.format("TransferorParty"), command, CallId=call_id, **params)
    time.sleep(0.5)
    call = wait_for_state(pbx, "InCall")
    assert (call["CallId"], call["Source"], call["Destination"]) == (call_id, "1000", "2000")
    for phone in (a, b, c):
        assert not phone.events("CALL_CLOSED"), f"{phone.account.user}: a refusal hung up"
    assert not c.events("CALL_INCOMING")

    # from Hold, the caller leaves and the callee goes to the target
    result = pbx.api("Hold", auth=True, CallId=call_id)
    assert result.code == 200, result.text
    wait_for_state(pbx, "Hold", timeout=5)
    transfer(pbx, call_id, "caller", "3000")
    a.wait_for_event("CALL_CLOSED", 5)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    new_call(pbx, call_id, "InCall", "2000", "3000")
    time.sleep(3.0)
    c.hangup()
    b.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert_end_hears(b, 2.0, TONE_C)
    assert_end_hears(c, 2.0, TONE_B)


def test_phone_transfers_with_refer_like_the_api_does(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    """B transfers A to C from the phone (baresip `transfer`: REFER, NOTIFY sipfrag back):
    the same path as BlindTransfer, so the same calls, audio and history."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C)
    old_id = establish(pbx, a, b)
    time.sleep(2.0)

    b.command("transfer", f"sip:3000@{pbx.sip_address}")
    b.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    call_id = new_call(pbx, old_id, "InCall", "1000", "3000")
    time.sleep(3.0)

    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert_end_hears(a, 1.5, TONE_C)
    assert_end_hears(c, 1.5, TONE_A)
    assert pbx.stop() == 0
    assert_history(pbx, old_id, call_id, ("1000", "3000", "3000", "CallerHungUp"))


def test_finished_url_reports_how_the_transferred_call_ended(
    pbx: PbxProcess, make_phone: PhoneFactory, web: WebServer
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    c = extension(pbx, make_phone, "3000", TONE_C)
    old_id = establish(pbx, a, b)
    result = pbx.api(
        "BlindTransfer",
        CallId=old_id,
        TransferorParty="callee",
        Target="3000",
        FinishedUrl=web.url("/transferred"),
    )
    assert result.code == 200, result.text
    c.wait_for_event("CALL_ESTABLISHED", 10)
    new_id = wait_for_state(pbx, "InCall")["CallId"]
    time.sleep(2.0)
    a.hangup()
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    fields = dict(web.wait_for("TransferFinished").fields)
    assert (fields["CallId"], fields["TransferredCallId"]) == (old_id, new_id)
    assert (fields["Caller"], fields["Callee"], fields["State"]) == ("1000", "3000", "CallerHungUp")
    assert 1 <= int(fields["Duration"]) <= 4
