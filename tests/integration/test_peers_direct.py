"""Sanity checks of the peer harnesses themselves, with no pypbx in between.

If these fail, the test machine (SIPp, baresip, ports) is broken and every PBX integration
failure is suspect; if they pass, a PBX test failure is about the PBX.
"""

from __future__ import annotations

import time

import pytest

from peers.tones import dominant_frequency, tone_power_ratio

AUTH = ("alice", "alice-secret")


def test_baresip_phones_call_each_other_and_hear_the_other_tone(make_phone):
    a = make_phone("alice", tone=440)
    b = make_phone("bob", tone=1000)
    a.dial(f"sip:bob@127.0.0.1:{b.sip_port}")
    a.wait_for_event("CALL_ESTABLISHED", 10)
    b.wait_for_event("CALL_ESTABLISHED", 10)
    a.wait_for_event("CALL_RTPESTAB", 10)
    b.wait_for_event("CALL_RTPESTAB", 10)
    time.sleep(3)
    a.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    b.wait_for_event("CALL_CLOSED", 10)

    heard_by_a = a.received_recording()
    heard_by_b = b.received_recording()
    assert dominant_frequency(heard_by_a) == pytest.approx(1000, abs=15)
    assert dominant_frequency(heard_by_b) == pytest.approx(440, abs=15)
    assert tone_power_ratio(heard_by_a, 1000) > 0.8
    assert tone_power_ratio(heard_by_b, 440) > 0.8
    assert tone_power_ratio(heard_by_a, 440) < 0.05


# (callee scenario, caller scenario, callee -d ms): each pair must both exit 0
PAIRS = [
    ("uas_answer", "uac_call", 1000),
    ("uas_answer_bye", "uac_far_bye", 1500),
    ("uas_ring", "uac_cancel", 1000),
    ("uas_busy", "uac_busy", 1000),
    ("uas_not_found", "uac_not_found", 1000),
    ("uas_unavailable", "uac_unavailable", 1000),
]


@pytest.mark.parametrize(("callee", "caller", "pause_ms"), PAIRS)
def test_sipp_call_scenarios_pair_up(sipp, callee, caller, pause_ms):
    uas = sipp(
        callee,
        rtp_echo=True,
        pause_ms=pause_ms,
        timeout=20,
        variables={"challenge": "yes", "auth_user": AUTH[0], "auth_pass": AUTH[1]},
    ).start()
    uas.wait_until_listening()
    uac = sipp(
        caller,
        remote=f"127.0.0.1:{uas.local_port}",
        service="2000",
        auth=AUTH,
        keys={"caller": AUTH[0]},
        pause_ms=1000,
        timeout=20,
    )
    caller_result = uac.run()
    callee_result = uas.wait()
    assert caller_result.ok, caller_result.describe()
    assert callee_result.ok, callee_result.describe()


def test_sipp_caller_with_wrong_password_is_refused_by_the_challenging_callee(sipp):
    """Proves the UAS really verifies digest credentials, so the pairs above mean something."""
    uas = sipp(
        "uas_answer",
        timeout=10,
        variables={"challenge": "yes", "auth_user": AUTH[0], "auth_pass": AUTH[1]},
    ).start()
    uas.wait_until_listening()
    uac = sipp(
        "uac_call",
        remote=f"127.0.0.1:{uas.local_port}",
        service="2000",
        auth=(AUTH[0], "wrong"),
        keys={"caller": AUTH[0]},
        timeout=10,
    )
    result = uac.run()
    uas.wait()
    assert result.returncode == 1, result.describe()
    assert "403 Forbidden" in result.messages


@pytest.mark.parametrize(
    ("scenario", "password"),
    [("register", AUTH[1]), ("register_rejected", "wrong")],
)
def test_sipp_register_scenarios_against_a_sipp_registrar(sipp, scenario, password):
    registrar = sipp(
        "registrar",
        timeout=10,
        variables={"auth_user": AUTH[0], "auth_pass": AUTH[1]},
    ).start()
    registrar.wait_until_listening()
    client = sipp(
        scenario,
        remote=f"127.0.0.1:{registrar.local_port}",
        service=AUTH[0],
        auth=(AUTH[0], password),
        timeout=10,
    )
    result = client.run()
    registrar_result = registrar.wait()
    assert result.ok, result.describe()
    assert registrar_result.ok, registrar_result.describe()


def test_sipp_register_expecting_refusal_fails_when_accepted(sipp):
    """register_rejected must not pass against a registrar that accepts the credentials."""
    registrar = sipp(
        "registrar", timeout=10, variables={"auth_user": AUTH[0], "auth_pass": AUTH[1]}
    ).start()
    registrar.wait_until_listening()
    result = sipp(
        "register_rejected",
        remote=f"127.0.0.1:{registrar.local_port}",
        service=AUTH[0],
        auth=AUTH,
        timeout=10,
    ).run()
    registrar.wait()
    assert result.returncode == 1, result.describe()
