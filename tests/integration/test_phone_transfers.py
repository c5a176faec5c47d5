"""Transfers and hold started from the phone itself, with a real PJSIP user agent (pjsua2).

The HTTP API tests drive transfers from pypbx's side; here the phone does it the way a desk
phone would: an attended transfer is a REFER whose Refer-To carries Replaces for the phone's
other call (RFC 3891/5589), a blind transfer a plain REFER (RFC 3515), hold a re-INVITE with
a=sendonly. pjsua2 (X, extension 2000) is the phone that does these things; baresip phones
A (1000) and C (3000) are the parties that get connected.

Each phone plays its own tone (A 1500, X 2000, C 2500 Hz) and records what it hears, so the
recordings prove who heard whom; the checks match the API transfer tests: ListActiveCalls
states, call history rows, nothing left over afterwards. pjsua records at the conference
bridge's clock, so its recordings follow the test's clock from when a call's media starts;
baresip's recordings only grow with audio received, so they are read from their ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_attended_transfer import assert_history as assert_attended_history
from test_attended_transfer import calls_now, transferred_call, wait_for_call
from test_blind_transfer import (
    api_fails,
    assert_end_hears,
    assert_start_hears,
    block_shares,
    extension,
    heard,
    new_call,
)
from test_blind_transfer import assert_history as assert_blind_history
from test_call_control import MUSIC_BAND, assert_hears_tone, assert_held, band_share, level

from peers.baresip import BaresipPhone
from peers.flows import PhoneFactory, no_calls_left, wait_for_state
from peers.pbx import PbxProcess
from peers.pjsua import Event, PjsuaConfig, PjsuaPhone
from peers.ports import PortAllocator
from peers.tones import read_wav, write_tone

TONE_A = 1500.0
TONE_X = 2000.0
TONE_C = 2500.0
RATE = 8000
BLOCK_SECONDS = 0.2  # test_blind_transfer.block_shares works on 200 ms blocks

PjsuaFactory = Callable[..., PjsuaPhone]
Times = tuple[float, float]  # (hold_at, consult_at): seconds into X's held call


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def make_pjsua(
    request: pytest.FixtureRequest, tmp_path: Path, ports: PortAllocator
) -> Iterator[PjsuaFactory]:
    """Factory: make_pjsua(pbx, "2000", tone=2000.0) adds the extension and registers a
    pjsua2 phone for it (auto-answering unless auto_answer=False); all stop at teardown."""
    phones: list[PjsuaPhone] = []

    def make(pbx: PbxProcess, ext: str, *, tone: float, auto_answer: bool = True) -> PjsuaPhone:
        password = f"pw-{ext}"
        pbx.add_sip_extension(ext, password)
        workdir = tmp_path / f"pjsua-{ext}-{len(phones)}"
        workdir.mkdir(parents=True)
        rtp = ports.block(10)
        config = PjsuaConfig(
            user=ext,
            password=password,
            registrar=pbx.sip_address,
            sip_port=ports.port(),
            rtp_port=rtp,
            rtp_count=10,
            tone_wav=str(write_tone(workdir / f"tone-{tone:g}.wav", tone, 120.0)),
            rec_dir=str(workdir / "rec"),
            log_path=str(workdir / "pjsua.log"),
            auto_answer=auto_answer,
        )
        phone = PjsuaPhone(workdir, config)
        phones.append(phone)
        return phone.start()

    yield make
    report = getattr(request.node, "rep_call", None)
    for phone in phones:
        if report is None or report.failed:
            print(f"--- pjsua {phone.user} ({phone.log_path}) ---\n{phone.log_tail(150)}")
        phone.stop()


# ---------------------------------------------------------------- audio analysis
def window(path: Path, start: float, end: float) -> np.ndarray:
    """Seconds [start, end) of a pjsua recording (whose time axis is the wall clock)."""
    data, rate = read_wav(path)
    assert rate == RATE, f"{path.name}: recorded at {rate} Hz"
    chunk = data[int(start * RATE) : int(end * RATE)]
    assert len(chunk) >= RATE // 2, (
        f"{path.name}: recording is {len(data) / RATE:.2f} s, "
        f"window [{start:.2f}, {end:.2f}) is not in it"
    )
    return chunk


def shares(samples: np.ndarray) -> str:
    """Level, music band and tone shares of a stretch, for assertion messages."""
    blocks = ", ".join(
        f"{tone:g} Hz {float(np.mean(block_shares(samples, tone))):.3f}"
        for tone in (TONE_A, TONE_X, TONE_C)
    )
    music = band_share(samples, *MUSIC_BAND)
    return f"{len(samples) / RATE:.1f} s, rms {level(samples):.4f}, music {music:.3f}, {blocks}"


def assert_file_hears(path: Path, start: float, end: float, tone: float) -> None:
    """In [start, end) of the recording most of every 200 ms block is `tone`."""
    samples = window(path, start, end)
    info = f"{path.name} [{start:.1f}, {end:.1f}): {shares(samples)}"
    assert float(np.mean(block_shares(samples, tone))) > 0.7, info


def assert_file_silent(path: Path, start: float, end: float) -> None:
    """In [start, end) the phone heard nothing: no RTP toward a phone that holds the call."""
    samples = window(path, start, end)
    assert level(samples) < 0.003, f"{path.name} [{start:.1f}, {end:.1f}): {shares(samples)}"


def assert_music_between(phone: BaresipPhone, before: float, after: float, seconds: float) -> None:
    """Between the last `before` tone and the first `after` tone the phone heard hold music
    (and neither tone) for at least `seconds`."""
    data = heard(phone)
    first = np.flatnonzero(block_shares(data, before) > 0.5)
    then = np.flatnonzero(block_shares(data, after) > 0.5)
    assert len(first) and len(then), f"{phone.account.user}: {shares(data)}"
    start = int(first[first < then[0]].max()) + 2  # one block of margin either side
    end = int(then[0]) - 1
    block = int(BLOCK_SECONDS * RATE)
    samples = data[start * block : end * block]
    where = f"[{start * BLOCK_SECONDS:.1f} s, +{len(samples) / RATE:.1f} s)"
    info = f"{phone.account.user} held {where}"
    assert len(samples) >= seconds * RATE, f"hold too short: {info}: {shares(data)}"
    assert level(samples) > 0.005, f"silence instead of music: {info}: {shares(samples)}"
    assert band_share(samples, *MUSIC_BAND) > 0.9, f"not the hold music: {info}: {shares(samples)}"
    for tone in (TONE_A, TONE_X, TONE_C):
        tone_level = float(np.mean(block_shares(samples, tone)))
        assert tone_level < 0.02, f"hears {tone:g} Hz while held: {info}: {shares(samples)}"


# ---------------------------------------------------------------- helpers
def answered(x: PjsuaPhone) -> tuple[int, float]:
    """The next incoming call on X once it is confirmed: its handle and the time (X's
    recording of it starts about then)."""
    call = x.wait_for_incoming(15)
    x.wait_for_state(call, "CONFIRMED", 15)
    return call, time.monotonic()


def transfer_codes(x: PjsuaPhone, call: int) -> list[int]:
    """Wait for the final NOTIFY of X's REFER on `call`; every sipfrag status reported since
    the last final one (X's onCallTransferStatus)."""
    x.wait_for_event("xfer_status", call=call, timeout=10, where=lambda e: e["final"])
    codes: list[int] = []
    for event in x.events("xfer_status", call):
        codes.append(event["code"])
        if event["final"]:
            last = codes
            codes = []
    return last


def released(x: PjsuaPhone, call: int) -> Event:
    """pypbx ended X's `call` (BYE to the transferor); the DISCONNECTED event."""
    return x.wait_for_state(call, "DISCONNECTED", 10)


def phone_holds(pbx: PbxProcess, x: PjsuaPhone, call: int, call_id: str) -> None:
    """X puts `call` on hold (re-INVITE a=sendonly): the only active call goes to Hold."""
    x.hold(call)
    x.wait_for_event("media", call=call, where=lambda e: e["status"] == "LOCAL_HOLD")
    assert wait_for_state(pbx, "Hold", timeout=5)["CallId"] == call_id


def transfer_with_replaces(
    pbx: PbxProcess, x: PjsuaPhone, held: int, target: int, old_ids: set[str]
) -> str:
    """X REFERs `held`'s partner with Replaces for `target`: NOTIFY reports 200, pypbx
    releases both of X's calls, the old CallIds are gone; the new call's CallId."""
    x.xfer_replaces(held, target)
    codes = transfer_codes(x, held)
    assert codes[-1] == 200 and set(codes) <= {100, 200}, f"sipfrag statuses {codes}"
    released(x, held)
    released(x, target)
    call_id = transferred_call(pbx, old_ids)
    assert x.calls() == [], "X still has a call"
    for old in old_ids:
        api_fails(pbx, 601, f"Call not found with ID '{old}'", "Hangup", CallId=old)
    return call_id


def assert_transferred_audio(
    a: BaresipPhone, c: BaresipPhone, x: PjsuaPhone, held: int, target: int, times: Times
) -> None:
    """A heard X, hold music while X held and consulted, then C; C heard X, then A. X heard
    A until it held, then nothing (a holding phone gets no audio), and C while consulting."""
    hold_at, consult_at = times
    assert_start_hears(a, 1.0, TONE_X)
    assert_music_between(a, TONE_X, TONE_C, consult_at - hold_at)
    assert_end_hears(a, 2.5, TONE_C)
    assert_start_hears(c, 1.0, TONE_X)
    assert_end_hears(c, 2.5, TONE_A)
    held_rec, target_rec = x.recording(held), x.recording(target)
    assert_file_hears(held_rec, 0.5, hold_at - 0.2, TONE_A)
    assert_file_silent(held_rec, hold_at + 0.5, consult_at + 2.0)
    assert_file_hears(target_rec, 0.5, 2.3, TONE_C)


def assert_ended_transferred(pbx: PbxProcess, *call_ids: str) -> None:
    """The calls ended in state Transferred (what pypbx logs as each call ends)."""
    log = pbx.log_tail(100000)
    for call_id in call_ids:
        assert f"call {call_id} ended: Transferred (TransferCompleted)" in log, call_id


# ---------------------------------------------------------------- tests
def test_attended_transfer_from_the_phone_with_replaces(
    pbx: PbxProcess, make_phone: PhoneFactory, make_pjsua: PjsuaFactory
) -> None:
    """A calls X; X holds A (re-INVITE), calls C, then REFERs A with Replaces for the X-C
    call. pypbx joins A and C in a new call, reports 200 to X in NOTIFY and releases X."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    c = extension(pbx, make_phone, "3000", TONE_C)
    x = make_pjsua(pbx, "2000", tone=TONE_X)

    a.dial(f"sip:2000@{pbx.sip_address}")
    held, t0 = answered(x)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    held_id = wait_for_state(pbx, "InCall")["CallId"]
    assert calls_now(pbx) == {held_id: ("1000", "2000", "InCall")}
    time.sleep(2.5)  # A and X talk

    hold_at = time.monotonic() - t0
    phone_holds(pbx, x, held, held_id)
    time.sleep(2.0)  # A hears hold music, X nothing

    consult_at = time.monotonic() - t0
    target = x.dial(f"sip:3000@{pbx.sip_address}")
    c.wait_for_event("CALL_ESTABLISHED", 15)
    x.wait_for_state(target, "CONFIRMED", 15)
    target_id = wait_for_call(pbx, "2000", "3000", "InCall", count=2)
    assert calls_now(pbx)[held_id] == ("1000", "2000", "Hold")
    time.sleep(2.5)  # X and C talk

    call_id = transfer_with_replaces(pbx, x, held, target, {held_id, target_id})
    assert not a.events("CALL_CLOSED") and not c.events("CALL_CLOSED"), "A or C was released"
    time.sleep(3.5)  # A and C talk

    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert len(a.events("CALL_ESTABLISHED")) == 1, "A's dialog was replaced"
    assert len(c.events("CALL_ESTABLISHED")) == 1, "C's dialog was replaced"
    assert_transferred_audio(a, c, x, held, target, (hold_at, consult_at))

    assert pbx.stop() == 0
    assert_ended_transferred(pbx, held_id, target_id)
    assert_attended_history(
        pbx, (held_id, "1000", "2000"), (target_id, "2000", "3000"), call_id, "CallerHungUp"
    )


def test_attended_transfer_from_the_phone_that_placed_the_held_call(
    pbx: PbxProcess, make_phone: PhoneFactory, make_pjsua: PjsuaFactory
) -> None:
    """The other way round: X calls A and holds it, C calls X, X REFERs A with Replaces for
    C's call. X is caller of one dialog and callee of the other, so the Replaces tags and
    pypbx's legs swap roles; the new call is still A -> C, and C hanging up ends it."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    c = extension(pbx, make_phone, "3000", TONE_C)
    x = make_pjsua(pbx, "2000", tone=TONE_X)

    held = x.dial(f"sip:1000@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    x.wait_for_state(held, "CONFIRMED", 15)
    t0 = time.monotonic()
    held_id = wait_for_state(pbx, "InCall")["CallId"]
    assert calls_now(pbx) == {held_id: ("2000", "1000", "InCall")}
    time.sleep(2.5)

    hold_at = time.monotonic() - t0
    phone_holds(pbx, x, held, held_id)
    time.sleep(1.5)

    consult_at = time.monotonic() - t0
    c.dial(f"sip:2000@{pbx.sip_address}")
    target, _ = answered(x)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    target_id = wait_for_call(pbx, "3000", "2000", "InCall", count=2)
    assert calls_now(pbx)[held_id] == ("2000", "1000", "Hold")
    time.sleep(2.5)

    call_id = transfer_with_replaces(pbx, x, held, target, {held_id, target_id})
    assert not a.events("CALL_CLOSED") and not c.events("CALL_CLOSED"), "A or C was released"
    time.sleep(3.5)

    c.hangup()
    c.wait_for_event("CALL_CLOSED", 10)
    a.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert len(a.events("CALL_ESTABLISHED")) == 1, "A's dialog was replaced"
    assert len(c.events("CALL_ESTABLISHED")) == 1, "C's dialog was replaced"
    assert_transferred_audio(a, c, x, held, target, (hold_at, consult_at))

    assert pbx.stop() == 0
    assert_ended_transferred(pbx, held_id, target_id)
    assert_attended_history(
        pbx, (held_id, "2000", "1000"), (target_id, "3000", "2000"), call_id, "CalleeHungUp"
    )


def test_replaces_for_a_ringing_call_fails_in_notify_and_keeps_both_calls(
    pbx: PbxProcess, make_phone: PhoneFactory, make_pjsua: PjsuaFactory
) -> None:
    """X tries the transfer while C still rings: pypbx cannot join a ringing call, so the
    NOTIFY says 481 while the REFER itself is accepted (a 481 response to the REFER would
    tell X the call with A is gone, and X would hang up on A). Once C answers, it works."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    c = extension(pbx, make_phone, "3000", TONE_C, answermode="manual")
    x = make_pjsua(pbx, "2000", tone=TONE_X)

    a.dial(f"sip:2000@{pbx.sip_address}")
    held, _ = answered(x)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    held_id = wait_for_state(pbx, "InCall")["CallId"]
    phone_holds(pbx, x, held, held_id)
    target = x.dial(f"sip:3000@{pbx.sip_address}")
    c.wait_for_event("CALL_INCOMING", 15)
    target_id = wait_for_call(pbx, "2000", "3000", "Ringing", count=2)

    x.xfer_replaces(held, target)
    codes = transfer_codes(x, held)
    assert codes[-1] == 481 and set(codes) <= {100, 481}, f"sipfrag statuses {codes}"
    time.sleep(0.5)
    assert calls_now(pbx) == {
        held_id: ("1000", "2000", "Hold"),
        target_id: ("2000", "3000", "Ringing"),
    }
    assert [call["call"] for call in x.calls()] == [held, target], "X lost a call"
    assert not a.events("CALL_CLOSED"), "the transferee was hung up"

    c.command("accept")
    c.wait_for_event("CALL_ESTABLISHED", 10)
    x.wait_for_state(target, "CONFIRMED", 10)
    assert wait_for_call(pbx, "2000", "3000", "InCall", count=2) == target_id
    time.sleep(1.5)
    call_id = transfer_with_replaces(pbx, x, held, target, {held_id, target_id})
    time.sleep(3.5)

    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert len(a.events("CALL_ESTABLISHED")) == 1, "A's dialog was replaced"
    assert_end_hears(a, 2.5, TONE_C)
    assert_end_hears(c, 2.5, TONE_A)

    assert pbx.stop() == 0
    assert_ended_transferred(pbx, held_id, target_id)
    assert_attended_history(
        pbx, (held_id, "1000", "2000"), (target_id, "2000", "3000"), call_id, "CallerHungUp"
    )


def test_blind_transfer_from_the_phone_with_refer(
    pbx: PbxProcess, make_phone: PhoneFactory, make_pjsua: PjsuaFactory
) -> None:
    """A calls X; X REFERs A to 3000 without consulting: A is put through to C. A REFER to
    a number that does not exist first fails (NOTIFY 404) and leaves the call alone."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    c = extension(pbx, make_phone, "3000", TONE_C)
    x = make_pjsua(pbx, "2000", tone=TONE_X)

    a.dial(f"sip:2000@{pbx.sip_address}")
    call, _ = answered(x)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    old_id = wait_for_state(pbx, "InCall")["CallId"]
    time.sleep(1.5)

    # a target that does not exist: NOTIFY says 404 and the call goes on
    x.xfer(call, f"sip:5999@{pbx.sip_address}")
    codes = transfer_codes(x, call)
    assert codes[-1] == 404 and set(codes) <= {100, 404}, f"sipfrag statuses {codes}"
    assert wait_for_state(pbx, "InCall")["CallId"] == old_id
    time.sleep(1.0)
    assert not a.events("CALL_CLOSED"), "a failed REFER ended the call"
    assert [c["call"] for c in x.calls()] == [call], "a failed REFER ended the call"

    x.xfer(call, f"sip:3000@{pbx.sip_address}")
    codes = transfer_codes(x, call)
    assert codes[-1] == 200 and set(codes) <= {100, 200}, f"sipfrag statuses {codes}"
    released(x, call)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    call_id = new_call(pbx, old_id, "InCall", "1000", "3000")
    assert not a.events("CALL_CLOSED"), "the transferee was released"
    assert x.calls() == [], "X still has a call"
    time.sleep(3.0)

    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    assert len(a.events("CALL_ESTABLISHED")) == 1, "the transferee's call was replaced"

    assert_start_hears(a, 1.0, TONE_X)
    assert_end_hears(a, 2.0, TONE_C)
    assert_end_hears(c, 2.0, TONE_A)
    assert_file_hears(x.recording(call), 0.5, 2.3, TONE_A)

    assert pbx.stop() == 0
    assert_ended_transferred(pbx, old_id)
    assert_blind_history(pbx, old_id, call_id, ("1000", "3000", "3000", "CallerHungUp"))


def test_hold_and_unhold_from_the_phone(
    pbx: PbxProcess, make_phone: PhoneFactory, make_pjsua: PjsuaFactory
) -> None:
    """X calls A, holds (re-INVITE a=sendonly), resumes (a=sendrecv), hangs up. While held
    A hears music and not X, X hears nothing; before and after, each hears the other."""
    a = extension(pbx, make_phone, "1000", TONE_A)
    x = make_pjsua(pbx, "2000", tone=TONE_X)

    call = x.dial(f"sip:1000@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    x.wait_for_state(call, "CONFIRMED", 15)
    t0 = time.monotonic()
    call_id = wait_for_state(pbx, "InCall")["CallId"]
    assert calls_now(pbx) == {call_id: ("2000", "1000", "InCall")}
    time.sleep(2.5)

    held_at = time.monotonic() - t0
    x.hold(call)
    x.wait_for_event("media", call=call, where=lambda e: e["status"] == "LOCAL_HOLD")
    assert wait_for_state(pbx, "Hold", timeout=5)["CallId"] == call_id
    api_fails(pbx, 303, "Command 'Unhold' cannot be used here", "Unhold", CallId=call_id)
    time.sleep(3.0)

    resumed_at = time.monotonic() - t0
    x.unhold(call)
    x.wait_for_event("media", call=call, where=lambda e: e["status"] == "ACTIVE")
    assert wait_for_state(pbx, "InCall", timeout=5)["CallId"] == call_id
    time.sleep(2.5)

    ended_at = time.monotonic() - t0
    x.hangup(call)
    released(x, call)
    a.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)

    start, end = assert_held(a, TONE_X, TONE_A, held_at, resumed_at - held_at)
    assert_hears_tone(a, 1.0, start - 0.2, TONE_X)
    assert_hears_tone(a, end + 0.2, ended_at - 0.5, TONE_X)
    rec = x.recording(call)
    assert_file_hears(rec, 0.5, held_at - 0.2, TONE_A)
    assert_file_silent(rec, held_at + 0.5, resumed_at - 0.1)
    assert_file_hears(rec, resumed_at + 0.7, ended_at - 0.2, TONE_A)

    assert pbx.stop() == 0
    (row,) = pbx.history()
    assert (row.call_id, row.source, row.destination, row.state) == (
        call_id,
        "2000",
        "1000",
        "CallerHungUp",
    ), str(row)
    assert row.talk_duration >= 7.0, str(row)
