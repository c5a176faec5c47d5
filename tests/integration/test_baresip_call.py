"""Two real softphones (baresip) call each other through pypbx; audio proves the bridge.

Phone 1000 plays 440 Hz, phone 2000 plays 1000 Hz. If pypbx bridges media correctly, each
phone's recording is the other phone's tone. The call is then ended over the HTTP API.
"""

from __future__ import annotations

import time

import pytest

from peers.tones import dominant_frequency, tone_power_ratio

TONE_A = 440.0
TONE_B = 1000.0


@pytest.fixture
def phones(pbx, make_phone):
    pbx.add_sip_extension("1000", "pw-1000")
    pbx.add_sip_extension("2000", "pw-2000")
    a = make_phone("1000", tone=TONE_A, registrar=pbx.sip_address, password="pw-1000")
    b = make_phone("2000", tone=TONE_B, registrar=pbx.sip_address, password="pw-2000")
    return a, b


def in_call(calls):
    return len(calls) == 1 and calls[0].get("CallState") == "InCall"


def test_phones_register_and_show_their_address(pbx, phones):
    a, _ = phones
    config = pbx.api("GetConfig", ExtensionId="1000")
    assert config.code == 200, config.text
    assert config.root.findtext("Config/LastIPAddress") == f"127.0.0.1:{a.sip_port} (Udp)"
    assert "baresip" in (config.root.findtext("Config/UserAgentName") or "")


def test_call_bridges_audio_both_ways_and_api_hangup_ends_it(pbx, phones):
    a, b = phones
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)

    (call,) = pbx.wait_for_calls(in_call, timeout=10)
    assert call["Source"] == "1000"
    assert call["Destination"] == "2000"
    assert call["CallId"]

    time.sleep(4)  # let audio flow
    result = pbx.api("Hangup", CallId=call["CallId"])
    assert result.code == 200, result.text
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)

    heard_by_a = a.received_recording()
    heard_by_b = b.received_recording()
    assert dominant_frequency(heard_by_a, skip_seconds=1.0) == pytest.approx(TONE_B, abs=15)
    assert dominant_frequency(heard_by_b, skip_seconds=1.0) == pytest.approx(TONE_A, abs=15)
    assert tone_power_ratio(heard_by_a, TONE_B, skip_seconds=1.0) > 0.7
    assert tone_power_ratio(heard_by_b, TONE_A, skip_seconds=1.0) > 0.7
    # neither phone hears itself (no echo / loopback in the bridge)
    assert tone_power_ratio(heard_by_a, TONE_A, skip_seconds=1.0) < 0.05
    assert tone_power_ratio(heard_by_b, TONE_B, skip_seconds=1.0) < 0.05

    # Hangup of an ended call: 601
    again = pbx.api("Hangup", CallId=call["CallId"])
    assert again.code == 601, again.text


def test_phone_hangup_ends_the_call_on_both_sides(pbx, phones):
    a, b = phones
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    a.wait_for_event("CALL_ESTABLISHED", 15)
    pbx.wait_for_calls(in_call, timeout=10)
    b.hangup()
    b.wait_for_event("CALL_CLOSED", 10)
    a.wait_for_event("CALL_CLOSED", 10)
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)
