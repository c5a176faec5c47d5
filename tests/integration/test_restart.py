"""A restart loses nothing: extensions, registrations and call history survive SIGTERM.

pypbx is stopped with SIGTERM and started again on the same data dir and ports. The callee,
a SIPp UAS registered before the restart, must still receive a call afterwards without
registering again; the extensions added over the HTTP API must still be there (and still
authenticate); the call history written before the restart must still be in the SQLite
file, unchanged, next to the new call's row.
"""

from __future__ import annotations

from peers.flows import PbxFactory, SippFactory, caller, finish, listen, no_calls_left, register
from peers.pbx import PbxProcess

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")


def call_once(pbx: PbxProcess, sipp: SippFactory, callee_port: int) -> None:
    """1000 calls 2000 at the SIPp UAS on `callee_port`; answered, caller hangs up."""
    uas = listen(sipp, "uas_answer", callee_port)
    uac = caller(pbx, sipp, "uac_call", CALLEE[0], *CALLER, pause_ms=500).start()
    finish(uac, uas)
    no_calls_left(pbx)


def test_restart_keeps_extensions_registrations_and_history(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    callee_port = register(pbx, sipp, *CALLEE).local_port
    contact = f"127.0.0.1:{callee_port} (Udp)"
    call_once(pbx, sipp, callee_port)
    assert pbx.stop() == 0, pbx.log_tail()
    (before,) = pbx.history()
    assert before.state == "CallerHungUp"

    pbx.start()
    assert pbx.extensions() == {"1000": "Disconnected", "2000": "Connected"}
    for ext, password in (CALLER, CALLEE):
        config = pbx.api("GetConfig", ExtensionId=ext)
        assert config.code == 200, config.text
        assert config.root.findtext("Config/Password") == password
        assert config.root.findtext("Config/Enabled") == "true"
    assert pbx.api("GetConfig", ExtensionId="2000").root.findtext("Config/LastIPAddress") == contact
    # no REGISTER since the restart: the binding came back from the data dir
    call_once(pbx, sipp, callee_port)
    assert pbx.stop() == 0, pbx.log_tail()

    first, second = pbx.history()
    assert first == before, "the row written before the restart changed"
    assert second.state == "CallerHungUp"
    assert second.call_id != first.call_id
    assert first.end_time is not None and second.start_time > first.end_time
