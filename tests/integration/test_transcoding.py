"""Transcoding: a PCMU-only phone talks to a PCMA-only phone through pypbx.

Phone 1000 offers and accepts only PCMU and plays 440 Hz; phone 2000 only PCMA and plays
1000 Hz. Neither could decode the other's audio, so each hearing the other's tone proves
pypbx converts between the two G.711 laws in both directions.
"""

from __future__ import annotations

import re
import time

import pytest

from peers.flows import PhoneFactory
from peers.pbx import PbxProcess
from peers.tones import dominant_frequency, tone_power_ratio

TONE_A = 440.0
TONE_B = 1000.0


def test_pcmu_phone_and_pcma_phone_hear_each_other(
    pbx: PbxProcess, make_phone: PhoneFactory
) -> None:
    pbx.add_sip_extension("1000", "pw-1000")
    pbx.add_sip_extension("2000", "pw-2000")
    a = make_phone(
        "1000", tone=TONE_A, registrar=pbx.sip_address, password="pw-1000", codecs="PCMU"
    )
    b = make_phone(
        "2000", tone=TONE_B, registrar=pbx.sip_address, password="pw-2000", codecs="PCMA"
    )
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    time.sleep(3)
    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)

    # the premise: each phone really sent and received only its own law
    for phone, law in ((a, "PCMU"), (b, "PCMA")):
        log = phone.log_path.read_text(errors="replace")
        chosen = set(re.findall(r"Set audio (?:en|de)coder: (\w+)", log))
        assert chosen == {law}, f"{phone.account.user} used {chosen}\n{phone.log_tail()}"

    heard_by_a = a.received_recording()
    heard_by_b = b.received_recording()
    assert dominant_frequency(heard_by_a, skip_seconds=1.0) == pytest.approx(TONE_B, abs=15)
    assert dominant_frequency(heard_by_b, skip_seconds=1.0) == pytest.approx(TONE_A, abs=15)
    assert tone_power_ratio(heard_by_a, TONE_B, skip_seconds=1.0) > 0.7
    assert tone_power_ratio(heard_by_b, TONE_A, skip_seconds=1.0) > 0.7
