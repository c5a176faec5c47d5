"""pypbx registering an outside line to a provider's registrar played by SIPp.

No pypbx process: a real SipStack on 127.0.0.1 and a TrunkRegistration run in the test's
own event loop, against SIPp scenarios that challenge (401, 407, stale nonces), check the
digest, grant a short expiry and demand the refresh before it lapses.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable

import pytest

from peers.ports import PortAllocator
from peers.sipp import Sipp, SippResult, TracedMessage
from pypbx.net.stack import SipStack
from pypbx.pbx.trunks import LineSettings, TrunkRegistration

USER = "15551230000"
AUTH_NAME = "acct77"
PASSWORD = "s3cret"
GRANTED = 4.0  # what the scenarios grant, in seconds

SippFactory = Callable[..., Sipp]

_PARAM = re.compile(r'([\w-]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@pytest.fixture
async def stack(ports: PortAllocator) -> AsyncIterator[SipStack]:
    sip = SipStack("127.0.0.1", ports.port())
    sip.on_request = lambda event: None
    await sip.start()
    yield sip
    await sip.stop()


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _register_refresh_stop(trunk: TrunkRegistration, provider: Sipp) -> SippResult:
    """Register, wait for one refresh (a new expiry), unregister, and collect SIPp's verdict."""
    trunk.start()
    await _until(lambda: trunk.status == "Registered", 10, "the registration")
    first = trunk.expires_at
    assert first is not None
    await _until(lambda: trunk.expires_at != first, GRANTED + 2, "the refresh")
    assert trunk.status == "Registered"
    await trunk.stop(timeout=5)
    assert trunk.status == "Unregistered"
    return await asyncio.to_thread(provider.wait)


def _registers(result: SippResult) -> list[TracedMessage]:
    return result.received(method="REGISTER")


def _params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Digest", header
    return {
        m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }


def _check_digest(request: TracedMessage, header: str, hash_name: str) -> dict[str, str]:
    """Recompute the digest from scratch (RFC 7616 §3.4.1), independently of pypbx."""
    params = _params(request.require(header))

    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode()).hexdigest()

    method, uri = request.first_line.split(" ")[:2]
    assert params["uri"] == uri
    ha1 = h(f"{AUTH_NAME}:{params['realm']}:{PASSWORD}")
    ha2 = h(f"{method}:{uri}")
    expected = h(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}")
    assert params["response"] == expected, request.text
    return params


def _check_one_registration(registers: list[TracedMessage], stack: SipStack) -> None:
    """Every REGISTER: one Call-ID and From tag, CSeq rising, the line's user in Contact."""
    assert len({m.require("Call-ID") for m in registers}) == 1
    assert len({m.require("From") for m in registers}) == 1
    cseqs = [int(m.require("CSeq").split()[0]) for m in registers]
    assert cseqs == sorted(set(cseqs)), cseqs
    for message in registers:
        assert message.require("Contact") == f"<sip:{USER}@127.0.0.1:{stack.port}>"
        assert message.require("To").startswith(f"<sip:{USER}@")


def _refresh_delay(result: SippResult, refresh: TracedMessage) -> float:
    """Seconds between the 200 that granted the binding and the refresh that renewed it."""
    trace = result.trace()
    index = next(i for i, m in enumerate(trace) if m.text == refresh.text)
    grant = next(m for m in reversed(trace[:index]) if m.sent and m.status == 200)
    return (refresh.time - grant.time).total_seconds()


async def test_registers_with_401_refreshes_before_expiry_and_unregisters(
    sipp: SippFactory, stack: SipStack
) -> None:
    provider = sipp(
        "provider_registrar",
        timeout=20,
        variables={"auth_user": AUTH_NAME, "auth_pass": PASSWORD},
    ).start()
    provider.wait_until_listening()
    statuses: list[str] = []
    line = LineSettings(
        name="provider",
        host="127.0.0.1",
        port=provider.local_port,
        username=USER,
        authorization_name=AUTH_NAME,
        password=PASSWORD,
    )
    trunk = TrunkRegistration(stack, line, on_status=statuses.append)

    result = await _register_refresh_stop(trunk, provider)

    assert result.ok, result.describe()
    assert statuses == ["Registering", "Registered", "Unregistered"]
    registers = _registers(result)
    assert len(registers) == 5, result.describe()
    _check_one_registration(registers, stack)
    first, answer, refresh, restale, unregister = registers
    assert first.header("Authorization") is None
    assert first.first_line == f"REGISTER sip:127.0.0.1:{provider.local_port} SIP/2.0"
    assert first.require("Expires") == "3600"
    for message in (answer, refresh, restale, unregister):
        params = _check_digest(message, "Authorization", "md5")
        assert params["username"] == AUTH_NAME
        assert params["opaque"] == "op1"
    # The refresh answers the remembered nonce in advance; after stale=true the new one.
    assert _params(refresh.require("Authorization"))["nc"] == "00000002"
    assert "nonceB" in _params(restale.require("Authorization"))["nonce"]
    delay = _refresh_delay(result, refresh)
    assert GRANTED / 2 - 0.5 <= delay < GRANTED, delay
    assert unregister.require("Expires") == "0"


async def test_registers_through_outbound_proxy_with_407_and_stale_nonce(
    sipp: SippFactory, stack: SipStack
) -> None:
    provider = sipp("provider_registrar_stale", timeout=20).start()
    provider.wait_until_listening()
    line = LineSettings(
        name="proxied",
        host="provider.invalid",  # never resolved: everything goes to the proxy
        username=USER,
        authorization_name=AUTH_NAME,
        password=PASSWORD,
        outbound_proxy=f"127.0.0.1:{provider.local_port}",
    )
    trunk = TrunkRegistration(stack, line)

    result = await _register_refresh_stop(trunk, provider)

    assert result.ok, result.describe()
    registers = _registers(result)
    assert len(registers) == 5, result.describe()
    _check_one_registration(registers, stack)
    for message in registers:
        assert message.first_line == "REGISTER sip:provider.invalid SIP/2.0"
        assert message.require("Route") == f"<sip:127.0.0.1:{provider.local_port};lr>"
        assert message.header("Authorization") is None
    for message in registers[1:]:
        params = _check_digest(message, "Proxy-Authorization", "sha256")
        assert params["algorithm"] == "SHA-256"
    nonces = [_params(m.require("Proxy-Authorization"))["nonce"] for m in registers[1:]]
    assert "nonceP1x" in nonces[0]
    assert all("nonceP2x" in nonce for nonce in nonces[1:])
    delay = _refresh_delay(result, registers[3])
    assert GRANTED / 2 - 0.5 <= delay < GRANTED, delay
    assert registers[4].require("Expires") == "0"


async def test_refused_password_fails_without_looping(sipp: SippFactory, stack: SipStack) -> None:
    provider = sipp(
        "provider_registrar_reject",
        timeout=20,
        variables={"auth_user": AUTH_NAME, "auth_pass": PASSWORD},
    ).start()
    provider.wait_until_listening()
    line = LineSettings(
        name="refused",
        host="127.0.0.1",
        port=provider.local_port,
        username=USER,
        authorization_name=AUTH_NAME,
        password="not-the-password",
    )
    trunk = TrunkRegistration(stack, line)
    trunk.start()
    await _until(lambda: trunk.status.startswith("Failed"), 10, "the failure")
    assert trunk.status == "Failed: credentials rejected (401 with the same nonce)"

    result = await asyncio.to_thread(provider.wait)  # fails on any third REGISTER

    await trunk.stop(timeout=1)
    assert result.ok, result.describe()
    assert len(_registers(result)) == 2
    assert trunk.status == "Unregistered"
