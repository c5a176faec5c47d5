"""Calls relayed by the relay worker process, with two real phones (baresip).

A plain call moves to the worker after `relay_worker_after` seconds; the phones must not
notice: each still hears the other's tone, key presses are still detected by pypbx and
reach the other phone, Hold takes the call back to the loop (music), Unhold hands it over
again, and hanging up leaves a history row. The pypbx log says where the packets went.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from peers.baresip import BaresipPhone
from peers.pbx import PbxProcess
from peers.tones import goertzel_power, read_wav

TONE_A = 440.0
TONE_B = 1000.0
HANDED_OVER = re.compile(r"relay worker: bridge \d+ \(\d+ <-> \d+\) handed over")
TAKEN_BACK = re.compile(r"relay worker: bridge \d+ taken back after relaying (\d+) packets")


def wait_for_log(
    pbx: PbxProcess, pattern: re.Pattern[str], count: int, timeout: float
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = pattern.findall(pbx.log_path.read_text(errors="replace"))
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern.pattern!r} seen {len(found)} times, wanted {count}")
        time.sleep(0.1)


def share(samples: np.ndarray, rate: int, frequency: float) -> float:
    """Fraction of a stretch's energy at `frequency` (100 ms Goertzel blocks)."""
    samples = samples - samples.mean()
    total = float(np.mean(samples * samples))
    block = rate // 10
    blocks = len(samples) // block
    power = sum(
        goertzel_power(samples[i * block : (i + 1) * block], rate, frequency) for i in range(blocks)
    )
    return min(1.0, power / blocks / total) if total > 1e-12 else 0.0


def stretch(path: Path, start: float, end: float) -> tuple[np.ndarray, int]:
    data, rate = read_wav(path)
    return data[int(start * rate) : int(end * rate)], rate


@pytest.fixture
def pbx(start_pbx):  # type: ignore[no-untyped-def]
    return start_pbx(config={"media": {"relay_worker_after": 0.5}})


def phone(pbx: PbxProcess, make_phone, ext: str, tone: float) -> BaresipPhone:  # type: ignore[no-untyped-def]
    pbx.add_sip_extension(ext, f"pw-{ext}")
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=f"pw-{ext}")


def call_via_worker(pbx: PbxProcess, make_phone) -> tuple[BaresipPhone, BaresipPhone]:  # type: ignore[no-untyped-def]
    """1000 (440 Hz) calls 2000 (1000 Hz); returns once the worker relays the call."""
    a = phone(pbx, make_phone, "1000", TONE_A)
    b = phone(pbx, make_phone, "2000", TONE_B)
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    wait_for_log(pbx, HANDED_OVER, 1, timeout=10)
    return a, b


def test_a_plain_call_is_relayed_by_the_worker_with_audio_and_keys(pbx, make_phone) -> None:  # type: ignore[no-untyped-def]
    a, b = call_via_worker(pbx, make_phone)
    time.sleep(3)  # talking through the worker
    a.send_dtmf("3")
    b.wait_for_event("CALL_DTMF_START", 5)
    assert [e.get("param") for e in b.events("CALL_DTMF_START")] == ["3"]
    deadline = time.monotonic() + 5
    while "DTMF 3 from the caller (rfc4733)" not in pbx.log_tail(400):
        assert time.monotonic() < deadline, "pypbx did not detect the key press"
        time.sleep(0.1)
    assert not TAKEN_BACK.findall(pbx.log_path.read_text())  # keys did not need the loop
    (call,) = pbx.active_calls()
    hangup = pbx.api("Hangup", CallId=call["CallId"])
    assert hangup.code == 200, hangup.text
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)
    (relayed,) = wait_for_log(pbx, TAKEN_BACK, 1, timeout=5)
    assert int(relayed) > 2 * 50 * 2  # both phones, 50 packets/s, over 2 s at least

    # the whole call, offloaded part included, is the other phone's tone and never our own
    for listener, heard, own in ((a, TONE_B, TONE_A), (b, TONE_A, TONE_B)):
        samples, rate = stretch(listener.received_recording(), 1.0, 1e9)
        assert share(samples, rate, heard) > 0.7
        assert share(samples, rate, own) < 0.05
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)
    pbx.stop()
    (row,) = pbx.history()
    assert (row.source, row.destination) == ("1000", "2000")
    assert row.state == "CallerHungUp", row.state


def test_hold_takes_the_call_back_and_unhold_hands_it_over_again(pbx, make_phone) -> None:  # type: ignore[no-untyped-def]
    a, b = call_via_worker(pbx, make_phone)
    (call,) = pbx.active_calls()
    time.sleep(1)
    held_at = time.monotonic()
    result = pbx.api("Hold", CallId=call["CallId"])
    assert result.code == 200, result.text
    wait_for_log(pbx, TAKEN_BACK, 1, timeout=5)
    time.sleep(2.5)  # music on hold, from the loop
    result = pbx.api("Unhold", CallId=call["CallId"])
    assert result.code == 200, result.text
    unheld_at = time.monotonic()
    wait_for_log(pbx, HANDED_OVER, 2, timeout=10)
    time.sleep(3)  # the worker again
    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)
    # B's recording: A's tone in the last seconds (after the second hand-over), and not
    # A's tone while held. Offsets are from the end: the recording ends at the hang-up.
    recording = b.received_recording()
    data, rate = read_wav(recording)
    length = len(data) / rate
    ended_at = time.monotonic()
    tail = data[int((length - 2.0) * rate) :]
    assert share(tail, rate, TONE_A) > 0.7
    held = data[
        int((length - (ended_at - held_at) + 0.7) * rate) : int(
            (length - (ended_at - unheld_at) - 0.3) * rate
        )
    ]
    assert len(held) > rate
    assert share(held, rate, TONE_A) < 0.1
