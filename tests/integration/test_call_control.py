"""Call control over the HTTP API with real phones: Hold, Unhold, Forward; hold from a phone.

Each baresip phone plays its own sine tone and records what it hears, one WAV per call. The
tones (1500, 2000, 2500 Hz) lie above every note and partial of the built-in hold music
(C major arpeggio, about 174-1570 Hz), so a stretch of a recording tells apart "hears the far
phone", "hears music" and "hears nothing".

A recording grows with the audio received, so its time axis only roughly follows the test's
clock (it starts when the first packet arrives, and a stalled machine can drop packets).
Hold periods are therefore found in the recording itself, as the stretch in which the far
tone is missing, and checked against when and how long the test held the call.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from peers.baresip import BaresipPhone
from peers.flows import PhoneFactory, SippFactory, caller, finish, no_calls_left, wait_for_state
from peers.pbx import PbxProcess
from peers.tones import read_wav

TONE_A = 1500.0
TONE_B = 2000.0
TONE_C = 2500.0
MUSIC_BAND = (150.0, 1400.0)  # the hold music's notes and all but its faintest partials
RATE = 8000
BLOCK = 800  # 100 ms: whole periods of every test tone, which so fall on one FFT bin

Samples = npt.NDArray[np.float64]


# ---------------------------------------------------------------- audio analysis
def heard(phone: BaresipPhone) -> Samples:
    """What `phone` heard in its latest call (a closed call's recording is complete)."""
    data, rate = read_wav(phone.received_recording())
    assert rate == RATE, f"{phone.account.user}: recording at {rate} Hz"
    return data


def window(phone: BaresipPhone, start: float, end: float) -> Samples:
    """Seconds [start, end) of what `phone` heard (at least 0.5 s of it)."""
    data = heard(phone)
    chunk = data[int(start * RATE) : int(end * RATE)]
    assert len(chunk) >= RATE // 2, (
        f"{phone.account.user}: recording is {len(data) / RATE:.2f} s, "
        f"window [{start:.2f}, {end:.2f}) is not in it"
    )
    return chunk


def block_powers(samples: Samples, tone: float) -> tuple[Samples, Samples]:
    """Per 100 ms block: (power at `tone`, total power); a sine of amplitude x gives x*x/2."""
    count = len(samples) // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(blocks, axis=1)[:, round(tone * BLOCK / RATE)]
    return 2.0 * np.abs(spectrum) ** 2 / BLOCK**2, np.mean(blocks * blocks, axis=1)


def tone_share(samples: Samples, tone: float) -> float:
    """Fraction (0..1) of the energy at `tone`: near 1 for that tone, near 0 without it."""
    at_tone, total = block_powers(samples, tone)
    return min(1.0, float(at_tone.sum() / total.sum())) if total.sum() > 1e-12 else 0.0


def level(samples: Samples) -> float:
    """RMS (full scale = 1.0)."""
    return float(np.sqrt(np.mean(samples * samples)))


def band_share(samples: Samples, low: float, high: float) -> float:
    """Fraction of the energy between `low` and `high` Hz."""
    spectrum = np.abs(np.fft.rfft((samples - samples.mean()) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), d=1.0 / RATE)
    total = float(spectrum[freqs >= 50.0].sum())
    if total <= 0.0:
        return 0.0
    return float(spectrum[(freqs >= low) & (freqs <= high)].sum()) / total


def describe(samples: Samples, *tones: float) -> str:
    shares = ", ".join(f"{f:g} Hz {tone_share(samples, f):.3f}" for f in tones)
    music = band_share(samples, *MUSIC_BAND)
    return f"rms {level(samples):.4f}, music band {music:.3f}, {shares}"


def tone_gap(phone: BaresipPhone, tone: float) -> tuple[float, float]:
    """(start, end) in seconds of the longest stretch in which `phone` did not hear `tone`."""
    at_tone, total = block_powers(heard(phone), tone)
    missing = at_tone < 0.5 * total
    best, run_start = (0, 0), 0
    for i, gap in enumerate([*missing.tolist(), False]):
        if not gap:
            if i - run_start > best[1] - best[0]:
                best = (run_start, i)
            run_start = i + 1
    seconds = BLOCK / RATE
    return best[0] * seconds, best[1] * seconds


def assert_hears_tone(phone: BaresipPhone, start: float, end: float, tone: float) -> None:
    samples = window(phone, start, end)
    info = f"{phone.account.user} [{start:.1f},{end:.1f}): {describe(samples, tone)}"
    assert tone_share(samples, tone) > 0.7, info


def assert_hears_music(
    phone: BaresipPhone, start: float, end: float, *, not_tones: tuple[float, ...]
) -> None:
    """Sound with energy, in the hold music's band, and none of the phones' tones."""
    samples = window(phone, start, end)
    info = f"{phone.account.user} [{start:.1f},{end:.1f}): {describe(samples, *not_tones)}"
    assert level(samples) > 0.005, f"silence instead of music: {info}"
    assert band_share(samples, *MUSIC_BAND) > 0.9, f"not the hold music: {info}"
    for tone in not_tones:
        assert tone_share(samples, tone) < 0.02, f"hears {tone:g} Hz while held: {info}"


def assert_held(
    phone: BaresipPhone, far: float, own: float, held_at: float, seconds: float
) -> tuple[float, float]:
    """`phone` stopped hearing `far` about when the test held the call, for about as long as
    it was held, and heard music instead. Returns the hold's (start, end) in the recording."""
    start, end = tone_gap(phone, far)
    where = f"{phone.account.user}: no {far:g} Hz in [{start:.1f}, {end:.1f}) s"
    assert abs(start - held_at) < 1.0, f"{where}; held at {held_at:.1f} s"
    assert abs(end - start - seconds) < 0.6, f"{where}; held for {seconds:.1f} s"
    assert_hears_music(phone, start + 0.2, end - 0.2, not_tones=(far, own))
    return start, end


# ---------------------------------------------------------------- set-up helpers
def extension(
    pbx: PbxProcess, make_phone: PhoneFactory, ext: str, tone: float, **kw: str
) -> BaresipPhone:
    """Add extension `ext` and register a baresip phone playing `tone` for it."""
    password = f"pw-{ext}"
    pbx.add_sip_extension(ext, password)
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=password, **kw)


def establish(pbx: PbxProcess, a: BaresipPhone, b: BaresipPhone) -> tuple[str, float]:
    """A dials B (auto-answer); returns the CallId and when both phones were in the call."""
    a.dial(f"sip:{b.account.user}@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    started = time.monotonic()
    call = wait_for_state(pbx, "InCall", timeout=10)
    assert (call["Source"], call["Destination"]) == (a.account.user, b.account.user)
    return call["CallId"], started


def api_ok(pbx: PbxProcess, command: str, **params: str) -> None:
    result = pbx.api(command, auth=True, **params)
    assert result.code == 200, result.text


def api_fails(pbx: PbxProcess, code: int, message: str, command: str, **params: str) -> None:
    """The command is refused with exactly this code and message."""
    result = pbx.api(command, auth=True, **params)
    assert (result.code, result.message) == (code, message), result.text


def hang_up(pbx: PbxProcess, *phones: BaresipPhone) -> None:
    phones[0].hangup()
    for phone in phones:
        phone.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)


# ---------------------------------------------------------------- tests
def test_call_control_commands_need_a_known_call(pbx: PbxProcess) -> None:
    for command in ("Hold", "Unhold"):
        api_fails(pbx, 601, "Call not found with ID 'nOSuCH'", command, CallId="nOSuCH")
        api_fails(
            pbx, 302, f"Missing or invalid parameter 'CallId' for command '{command}'", command
        )
    api_fails(
        pbx, 601, "Call not found with ID 'nOSuCH'", "Forward", CallId="nOSuCH", Destination="2000"
    )


def test_hold_plays_music_to_both_and_unhold_reconnects(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id, t0 = establish(pbx, a, b)
    api_fails(pbx, 303, "Command 'Unhold' cannot be used here", "Unhold", CallId=call_id)

    time.sleep(3)
    held_at = time.monotonic() - t0
    api_ok(pbx, "Hold", CallId=call_id)
    assert wait_for_state(pbx, "Hold", timeout=2)["CallId"] == call_id
    api_fails(pbx, 303, "Command 'Hold' cannot be used here", "Hold", CallId=call_id)
    time.sleep(4)
    resumed_at = time.monotonic() - t0
    api_ok(pbx, "Unhold", CallId=call_id)
    assert wait_for_state(pbx, "InCall", timeout=2)["CallId"] == call_id
    api_fails(pbx, 303, "Command 'Unhold' cannot be used here", "Unhold", CallId=call_id)
    time.sleep(3)
    ended_at = time.monotonic() - t0
    # held again, then a phone hangs up: the call (and its music) ends like any other
    api_ok(pbx, "Hold", CallId=call_id)
    wait_for_state(pbx, "Hold", timeout=2)
    hang_up(pbx, b, a)
    api_fails(pbx, 601, f"Call not found with ID '{call_id}'", "Unhold", CallId=call_id)

    for phone, far, own in ((a, TONE_B, TONE_A), (b, TONE_A, TONE_B)):
        start, end = assert_held(phone, far, own, held_at, resumed_at - held_at)
        assert_hears_tone(phone, 1.0, start - 0.2, far)
        assert_hears_tone(phone, end + 0.2, ended_at - 0.3, far)


def test_forward_moves_a_ringing_call_to_another_phone(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B, answermode="manual")
    c = extension(pbx, make_phone, "3000", TONE_C)
    pbx.add_sip_extension("4000", "pw-4000")  # exists, but no phone registered
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_INCOMING", 15)
    call_id = wait_for_state(pbx, "Ringing")["CallId"]
    for command in ("Hold", "Unhold"):
        api_fails(pbx, 303, f"Command '{command}' cannot be used here", command, CallId=call_id)

    bad_destination = "Missing or invalid parameter 'Destination' for command 'Forward'"
    for destination in ("5999", "4000"):
        api_fails(pbx, 302, bad_destination, "Forward", CallId=call_id, Destination=destination)
    api_fails(pbx, 302, bad_destination, "Forward", CallId=call_id)
    time.sleep(0.5)
    call = wait_for_state(pbx, "Ringing")
    assert (call["CallId"], call["Destination"]) == (call_id, "2000")
    assert not b.events("CALL_CLOSED"), "a refused Forward stopped the original ringing"

    api_ok(pbx, "Forward", CallId=call_id, Destination="3000")
    b.wait_for_event("CALL_CLOSED", 10)
    c.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    t0 = time.monotonic()
    call = wait_for_state(pbx, "InCall")
    assert call["CallId"] == call_id
    assert (call["Source"], call["Destination"]) == ("1000", "3000")
    api_fails(
        pbx,
        303,
        "Command 'Forward' cannot be used here",
        "Forward",
        CallId=call_id,
        Destination="2000",
    )
    assert not b.events("CALL_ESTABLISHED")

    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    ended_at = time.monotonic() - t0
    hang_up(pbx, a, c)
    assert_hears_tone(a, 1.0, ended_at - 0.5, TONE_C)
    assert_hears_tone(c, 1.0, ended_at - 0.5, TONE_A)


def test_phone_hold_plays_music_to_the_partner_and_is_not_api_hold(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    a = extension(pbx, make_phone, "1000", TONE_A)
    b = extension(pbx, make_phone, "2000", TONE_B)
    call_id, t0 = establish(pbx, a, b)

    time.sleep(2.5)
    held_at = time.monotonic() - t0
    a.command("hold")  # re-INVITE with a=sendonly
    assert wait_for_state(pbx, "Hold", timeout=5)["CallId"] == call_id
    api_fails(pbx, 303, "Command 'Unhold' cannot be used here", "Unhold", CallId=call_id)
    api_fails(pbx, 303, "Command 'Hold' cannot be used here", "Hold", CallId=call_id)
    time.sleep(3)
    resumed_at = time.monotonic() - t0
    a.command("resume")  # re-INVITE with a=sendrecv
    assert wait_for_state(pbx, "InCall", timeout=5)["CallId"] == call_id
    time.sleep(2.5)
    ended_at = time.monotonic() - t0
    hang_up(pbx, b, a)

    # Only B's recording: baresip 1.0 stops feeding its recorder once it has renegotiated
    # media, so the holder's own recording ends at the hold (also phone to phone, no PBX).
    start, end = assert_held(b, TONE_A, TONE_B, held_at, resumed_at - held_at)
    assert_hears_tone(b, 1.0, start - 0.2, TONE_A)
    assert_hears_tone(b, end + 0.2, ended_at - 0.3, TONE_A)


def test_phone_hold_and_resume_reconnect_both_directions(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory
) -> None:
    """A SIPp caller echoes what it receives, holds (re-INVITE sendonly) and resumes.

    B then hears its own tone only while audio flows B -> pypbx -> SIPp -> pypbx -> B, so
    after the resume its tone proves both directions are reconnected; while held, music.
    uac_hold holds 0.5 s after the answer for 1.5 s, then talks 1.5 s more and hangs up.
    """
    pbx.add_sip_extension("1000", "pw-1000")
    b = extension(pbx, make_phone, "2000", TONE_B)
    uac = caller(pbx, sipp, "uac_hold", "2000", "1000", "pw-1000", rtp_echo=True).start()
    b.wait_for_event("CALL_ESTABLISHED", 15)
    t0 = time.monotonic()
    call_id = wait_for_state(pbx, "Hold", timeout=5)["CallId"]
    held_at = time.monotonic() - t0
    api_fails(pbx, 303, "Command 'Unhold' cannot be used here", "Unhold", CallId=call_id)
    wait_for_state(pbx, "InCall", timeout=5)
    b.wait_for_event("CALL_CLOSED", 10)
    ended_at = time.monotonic() - t0
    finish(uac)  # also checks pypbx answered a=recvonly, then a=sendrecv
    no_calls_left(pbx)

    _, end = assert_held(b, TONE_B, TONE_B, held_at, 1.5)
    assert_hears_tone(b, end + 0.2, ended_at - 0.3, TONE_B)
