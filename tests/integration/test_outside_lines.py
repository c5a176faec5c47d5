"""Outside lines with a SIPp "provider": calls out through a line (the dial plan picks it,
the provider's digest challenge is answered, the line's caller ID is presented, its channel
limit holds) and calls in on a DID (trusted by the provider's address, routed by the dial
plan); a stranger cannot place outside calls."""

from __future__ import annotations

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
