"""Outside lines with a SIPp "provider": calls out through a line (the dial plan picks it,
the provider's digest challenge is answered, the line's caller ID is presented, its channel
limit holds) and calls in on a DID (trusted by the provider's address, routed by the dial
plan); a stranger cannot place outside calls."""

from __future__ import annotations

import time

import numpy as np

from peers.baresip import BaresipPhone
from peers.flows import (
    PhoneFactory,
    SippFactory,
    caller,
    finish,
    listen,
    no_calls_left,
    wait_for_state,
)
from peers.pbx import PbxProcess
from peers.tones import read_wav


def phone(pbx: PbxProcess, make_phone: PhoneFactory, ext: str) -> BaresipPhone:
    pbx.add_sip_extension(ext, f"pw-{ext}")
    return make_phone(ext, tone=1500.0, registrar=pbx.sip_address, password=f"pw-{ext}")


def add_line(pbx: PbxProcess, port: int, **extra: str) -> None:
    fields = {
        "ID": "carrier",
        "Enabled": "true",
        "Host": "127.0.0.1",
        "Port": str(port),
        "Transport": "udp",
        "Username": "acct77",
        "AuthorizationName": "acct77",
        "Password": "s3cret",
        "Register": "false",
        "DIDs": "3615550100",
        "CallerId": "3612345",
    }
    fields.update(extra)
    pbx.add_config("Line", "LineExtensionInfo", **fields)
    pbx.add_config(
        "DialPlanRule",
        "DialPlanRuleExtensionInfo",
        ID="outside",
        Enabled="true",
        Order="10",
        Pattern="0.",
        Destination="carrier",
        StripDigits="1",
    )


def test_a_call_out_through_a_line(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory, ports: object
) -> None:
    provider = listen(sipp, "uas_answer", ports.port(), pause_ms=1000)  # type: ignore[attr-defined]
    add_line(pbx, provider.local_port)
    a = phone(pbx, make_phone, "1000")
    a.dial(f"sip:0555123@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("1000", "carrier")
    a.hangup()
    finish(provider)
    no_calls_left(pbx)
    messages = provider.message_file.read_text()
    assert "INVITE sip:555123@127.0.0.1" in messages  # the rule stripped the 0
    assert "sip:3612345@127.0.0.1" in messages  # the line's caller ID


def test_a_provider_challenge_is_answered(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory, ports: object
) -> None:
    provider = sipp(
        "uas_answer",
        local_port=ports.port(),  # type: ignore[attr-defined]
        rtp_echo=True,
        variables={"challenge": "yes", "auth_user": "acct77", "auth_pass": "s3cret"},
        timeout=40,
    )
    provider.start().wait_until_listening()
    add_line(pbx, provider.local_port)
    a = phone(pbx, make_phone, "1000")
    a.dial(f"sip:0555123@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    a.hangup()
    finish(provider)  # the scenario verified the Authorization (403 otherwise)
    no_calls_left(pbx)


def test_a_call_in_on_a_did_rings_the_extension_the_dial_plan_names(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory, ports: object
) -> None:
    provider_port = ports.port()  # type: ignore[attr-defined]
    add_line(pbx, provider_port)
    pbx.add_config(
        "DialPlanRule",
        "DialPlanRuleExtensionInfo",
        ID="reception",
        Enabled="true",
        Order="5",
        From="line:carrier",
        Pattern="3615550100",
        Destination="2000",
    )
    b = phone(pbx, make_phone, "2000")
    run = sipp(
        "uac_provider_call",
        local_port=provider_port,
        remote=pbx.sip_address,
        service="3615550100",
        keys={"caller": "36201234567"},
        pause_ms=2000,
        timeout=30,
    )
    run.start()
    b.wait_for_event("CALL_ESTABLISHED", 15)
    call = wait_for_state(pbx, "InCall")
    assert (call["Source"], call["Destination"]) == ("36201234567", "2000")
    finish(run)
    b.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)


def test_a_stranger_cannot_call_out(pbx: PbxProcess, sipp: SippFactory, ports: object) -> None:
    add_line(pbx, ports.port())  # type: ignore[attr-defined]
    # same INVITE as the provider's, from another port: it must authenticate and cannot
    run = caller(pbx, sipp, "uac_refused", "0555123", "nobody", "wrong")
    result = run.run()
    assert result.ok, result.describe()
    no_calls_left(pbx)


def test_pypbx_registers_a_line_to_its_provider(
    pbx: PbxProcess, sipp: SippFactory, ports: object
) -> None:
    provider = sipp(
        "provider_registrar",
        local_port=ports.port(),  # type: ignore[attr-defined]
        variables={"auth_user": "acct77", "auth_pass": "s3cret"},
        timeout=20,
    ).start()
    provider.wait_until_listening()
    add_line(pbx, provider.local_port, Register="true", Username="15551230000")
    deadline = time.monotonic() + 10
    while pbx.extensions().get("carrier") != "Connected" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pbx.extensions().get("carrier") == "Connected", pbx.extensions()
    # the provider grants 4 s: the refresh comes (and is challenged again) before that
    while provider.message_file.read_text().count("SIP/2.0 200 OK") < 2:
        assert time.monotonic() < deadline + 5, provider.message_file.read_text()[-2000:]
        time.sleep(0.05)
    assert pbx.api("RemoveConfig", ExtensionId="carrier").code == 200
    finish(provider)  # the scenario ends with the unregister (Expires: 0)


def test_a_line_with_all_channels_busy_refuses_another_call(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory, ports: object
) -> None:
    provider = listen(sipp, "uas_answer", ports.port(), pause_ms=1000)  # type: ignore[attr-defined]
    add_line(pbx, provider.local_port, MaxChannels="1")
    a = phone(pbx, make_phone, "1000")
    b = phone(pbx, make_phone, "2000")
    a.dial(f"sip:0555123@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    b.dial(f"sip:0555124@{pbx.sip_address}")  # the one channel is taken
    closed = b.wait_for_event("CALL_CLOSED", 10)
    assert "486" in str(closed), closed
    a.hangup()
    finish(provider)
    no_calls_left(pbx)


def test_attended_transfer_joins_an_outside_call_and_an_extension(
    pbx: PbxProcess, make_phone: PhoneFactory, sipp: SippFactory, ports: object
) -> None:
    """The provider echoes what it receives, so a phone hearing its own tone back through
    the line proves audio flows both ways between that phone and the outside party."""
    provider = listen(sipp, "uas_answer", ports.port(), pause_ms=1000, timeout=60)  # type: ignore[attr-defined]
    add_line(pbx, provider.local_port)
    pbx.add_sip_extension("1000", "pw-1000")
    a = make_phone("1000", tone=1500.0, registrar=pbx.sip_address, password="pw-1000")
    pbx.add_sip_extension("2000", "pw-2000")
    b = make_phone("2000", tone=2000.0, registrar=pbx.sip_address, password="pw-2000")
    a.dial(f"sip:0555123@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    outside = wait_for_state(pbx, "InCall")["CallId"]
    time.sleep(2.0)
    assert pbx.api("Hold", CallId=outside).code == 200
    a.dial(f"sip:2000@{pbx.sip_address}")
    b.wait_for_event("CALL_ESTABLISHED", 15)
    inside = next(c["CallId"] for c in pbx.active_calls() if c["Destination"] == "2000")
    time.sleep(1.0)
    result = pbx.api("AttendedTransfer", TransferredCallId=outside, TargetCallId=inside)
    assert result.code == 200, result.text
    joined = wait_for_state(pbx, "InCall")
    assert joined["CallId"] not in (outside, inside)  # a new call joins the two others
    time.sleep(3.0)
    b.hangup()
    finish(provider)
    no_calls_left(pbx)
    longest = max(a.recordings("dec"), key=lambda path: path.stat().st_size)  # the outside call
    heard_a, _ = read_wav(longest)
    assert seconds_with(heard_a, 1500.0) >= 1.5  # A's tone came back through the provider
    heard_b, _ = read_wav(b.received_recording())
    assert seconds_with(heard_b[-int(2.5 * RATE) :], 2000.0) >= 2.0  # and then B's did


RATE = 8000
BLOCK = 800


def seconds_with(samples: np.ndarray, tone: float) -> float:
    count = len(samples) // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    at = 2.0 * np.abs(np.fft.rfft(blocks, axis=1)[:, round(tone * BLOCK / RATE)]) ** 2 / BLOCK**2
    total = np.mean(blocks * blocks, axis=1)
    share = np.where(total > 1e-9, at / np.maximum(total, 1e-12), 0.0)
    return float((share > 0.3).sum()) * BLOCK / RATE
