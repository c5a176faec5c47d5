"""Configuration changes over the HTTP API take effect on the SIP side at once.

A removed (RemoveConfig) or disabled (ModifyConfig Enabled=false) extension can no longer
register nor place calls, and the registration it had is dropped: calls to it fail, and
ListExtensions shows it Disconnected. Bringing the extension back (AddConfig again, or
Enabled=true) does not bring back the old registration either, which tells "dropped" apart
from "ignored while disabled". A password changed with ModifyConfig applies to the very
next REGISTER.
"""

from __future__ import annotations

from peers.flows import PbxFactory, SippFactory, caller, final_status, finish, register
from peers.pbx import PbxProcess
from peers.sipp import SippResult

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")


def refused_register(pbx: PbxProcess, sipp: SippFactory, ext: str, password: str) -> SippResult:
    """REGISTER that must be challenged (401) and then refused; returns the run's result."""
    run = sipp("register_rejected", remote=pbx.sip_address, service=ext, auth=(ext, password))
    result = run.run()
    assert result.ok, result.describe()
    return result


def call(pbx: PbxProcess, sipp: SippFactory, number: str, ext: str, password: str) -> SippResult:
    """A call from `ext` to `number` that must fail; returns the caller's result."""
    (result,) = finish(caller(pbx, sipp, "uac_refused", number, ext, password).start())
    return result


def assert_refused_after_auth(result: SippResult, challenge: int) -> None:
    """The request was challenged, answered with credentials, and then refused with 403."""
    statuses = [m.status for m in result.trace() if not m.sent and m.status and m.status >= 200]
    assert statuses == [challenge, 403], f"{statuses}\n{result.describe()}"
    answered = [m for m in result.trace() if m.sent and m.method in ("REGISTER", "INVITE")]
    assert answered[-1].header("Authorization") or answered[-1].header("Proxy-Authorization")


def test_removed_extension_can_neither_register_nor_call_and_loses_its_registration(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    register(pbx, sipp, *CALLEE)
    assert pbx.extensions() == {"1000": "Disconnected", "2000": "Connected"}

    result = pbx.remove_extension(CALLEE[0])
    assert result.code == 200, result.text
    assert pbx.extensions() == {"1000": "Disconnected"}
    assert_refused_after_auth(refused_register(pbx, sipp, *CALLEE), 401)
    assert_refused_after_auth(call(pbx, sipp, CALLER[0], *CALLEE), 407)
    assert final_status(call(pbx, sipp, CALLEE[0], *CALLER)) == 404

    pbx.add_sip_extension(*CALLEE)  # the same number again: a new extension, not registered
    assert pbx.extensions() == {"1000": "Disconnected", "2000": "Disconnected"}
    assert final_status(call(pbx, sipp, CALLEE[0], *CALLER)) == 480
    pbx.stop()
    states = [(row.destination, row.state) for row in pbx.history()]
    assert states == [("2000", "NotFound"), ("2000", "NotFound")], states


def test_disabled_extension_can_neither_register_nor_call_and_loses_its_registration(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    register(pbx, sipp, *CALLEE)
    assert pbx.extensions()["2000"] == "Connected"

    result = pbx.modify_sip_extension(CALLEE[0], Enabled="false")
    assert result.code == 200, result.text
    assert pbx.api("GetConfig", ExtensionId="2000").root.findtext("Config/Enabled") == "false"
    assert pbx.extensions()["2000"] == "Disconnected"
    assert_refused_after_auth(refused_register(pbx, sipp, *CALLEE), 401)
    assert_refused_after_auth(call(pbx, sipp, CALLER[0], *CALLEE), 407)
    assert final_status(call(pbx, sipp, CALLEE[0], *CALLER)) == 404

    result = pbx.modify_sip_extension(CALLEE[0], Enabled="true")
    assert result.code == 200, result.text
    assert pbx.extensions()["2000"] == "Disconnected"  # the old registration is gone
    assert final_status(call(pbx, sipp, CALLEE[0], *CALLER)) == 480
    register(pbx, sipp, *CALLEE)  # enabled again: it may register again
    assert pbx.extensions()["2000"] == "Connected"


def test_changed_password_applies_at_the_next_register(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLEE)
    register(pbx, sipp, *CALLEE)

    result = pbx.modify_sip_extension(CALLEE[0], Password="new-secret-2000")
    assert result.code == 200, result.text
    assert_refused_after_auth(refused_register(pbx, sipp, *CALLEE), 401)
    register(pbx, sipp, CALLEE[0], "new-secret-2000")
    assert pbx.extensions() == {"2000": "Connected"}
