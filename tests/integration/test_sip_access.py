"""What pypbx tells strangers: OPTIONS is answered freely, extensions cannot be enumerated.

A REGISTER for a user that does not exist must be challenged exactly like one for an
existing user (same status, same headers, same challenge parameters) and, once answered,
refused exactly like a wrong password: 403. Otherwise probing REGISTERs would reveal which
extensions exist.
"""

from __future__ import annotations

import re

from peers.flows import SippFactory
from peers.pbx import PbxProcess
from peers.sipp import SippResult, TracedMessage

# values that differ between any two responses, by design
_PER_MESSAGE = {"via", "from", "to", "call-id", "cseq", "content-length", "date"}


def test_options_is_answered_200_without_authentication(pbx: PbxProcess, sipp: SippFactory) -> None:
    for transport in ("u1", "t1"):
        result = sipp("options", remote=pbx.sip_address, transport=transport).run()
        assert result.ok, result.describe()
        (ok,) = result.received(status=200)
        allowed = {m.strip() for m in (ok.header("Allow") or "").split(",")}
        assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"} <= allowed, ok.text
        assert ok.header("WWW-Authenticate") is None and ok.header("Proxy-Authenticate") is None


def register_refused(pbx: PbxProcess, sipp: SippFactory, user: str, password: str) -> SippResult:
    result = sipp(
        "register_rejected", remote=pbx.sip_address, service=user, auth=(user, password)
    ).run()
    assert result.ok, result.describe()
    return result


def shape(response: TracedMessage) -> tuple[str, list[tuple[str, str]], list[str]]:
    """Status line, header names in order with the values that do not vary per message, and
    the challenge's parameters with the values that must be equal (all but nonce/opaque)."""
    headers = []
    for line in response.header_lines:
        name, _, value = line.partition(":")
        name = name.strip()
        fixed = name.casefold() not in _PER_MESSAGE | {"www-authenticate"}
        headers.append((name, value.strip() if fixed else "*"))
    challenge = response.header("WWW-Authenticate") or ""
    params = [
        f"{name}={'*' if name in ('nonce', 'opaque') else value}"
        for name, value in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', challenge)
    ]
    return response.first_line, headers, params


def finals(result: SippResult) -> list[TracedMessage]:
    return [m for m in result.trace() if not m.sent and m.status and m.status >= 200]


def test_unknown_user_is_challenged_and_refused_like_an_existing_one(
    pbx: PbxProcess, sipp: SippFactory
) -> None:
    pbx.add_sip_extension("1000", "pw-1000")
    pbx.add_sip_extension("2000", "pw-2000")
    assert pbx.modify_sip_extension("2000", Enabled="false").code == 200
    cases = {
        "existing user, wrong password": register_refused(pbx, sipp, "1000", "guess"),
        "unknown user": register_refused(pbx, sipp, "4711", "guess"),
        "disabled user, right password": register_refused(pbx, sipp, "2000", "pw-2000"),
    }
    shapes = {}
    for name, result in cases.items():
        challenge, refusal = finals(result)
        assert challenge.status == 401, f"{name}\n{result.describe()}"
        assert refusal.first_line == "SIP/2.0 403 Forbidden", f"{name}\n{result.describe()}"
        assert challenge.header("WWW-Authenticate"), f"{name}: 401 without a challenge"
        shapes[name] = (shape(challenge), shape(refusal))
    reference = shapes.pop("existing user, wrong password")
    for name, seen in shapes.items():
        assert seen == reference, f"{name} is told apart from an existing user"
