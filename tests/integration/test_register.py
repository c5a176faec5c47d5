"""REGISTER with digest authentication against a running pypbx (SIPp as the phone)."""

from __future__ import annotations

import time


def test_register_with_digest_auth(pbx, sipp):
    pbx.add_sip_extension("1000", "pw-1000")
    client = sipp("register", remote=pbx.sip_address, service="1000", auth=("1000", "pw-1000"))
    result = client.run()
    assert result.ok, result.describe()

    # where it registered from is written just after the 200 goes out: allow a moment
    expected = f"127.0.0.1:{client.local_port} (Udp)"
    deadline = time.monotonic() + 5
    while True:
        config = pbx.api("GetConfig", ExtensionId="1000")
        assert config.code == 200, config.text
        if config.root.findtext("Config/LastIPAddress") == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert config.root.findtext("Config/LastIPAddress") == expected
    assert config.root.findtext("Config/UserAgentName") == "SIPp"


def test_register_with_wrong_password_is_refused(pbx, sipp):
    pbx.add_sip_extension("1000", "pw-1000")
    result = sipp(
        "register_rejected", remote=pbx.sip_address, service="1000", auth=("1000", "wrong")
    ).run()
    assert result.ok, result.describe()

    config = pbx.api("GetConfig", ExtensionId="1000")
    assert config.root.findtext("Config/LastIPAddress") in ("", None), config.text


def test_register_of_unknown_user_is_refused_like_a_wrong_password(pbx, sipp):
    """No extension enumeration: an unknown user gets the same challenge and refusal."""
    result = sipp(
        "register_rejected", remote=pbx.sip_address, service="4711", auth=("4711", "guess")
    ).run()
    assert result.ok, result.describe()


def test_reregistering_from_a_new_port_moves_the_binding(pbx, sipp):
    pbx.add_sip_extension("1000", "pw-1000")
    for _ in range(2):
        client = sipp("register", remote=pbx.sip_address, service="1000", auth=("1000", "pw-1000"))
        result = client.run()
        assert result.ok, result.describe()
    config = pbx.api("GetConfig", ExtensionId="1000")
    assert config.root.findtext("Config/LastIPAddress") == f"127.0.0.1:{client.local_port} (Udp)"


def test_repeated_failed_logins_ban_the_source(start_pbx, sipp):
    """A password-guessing source is banned: even the right password is refused then."""
    pbx = start_pbx(config={"security": {"auth_ban_failures": 3, "auth_ban_ignore": []}})
    pbx.add_sip_extension("1000", "pw-1000")
    for guess in ("a", "b", "c"):
        result = sipp(
            "register_rejected", remote=pbx.sip_address, service="1000", auth=("1000", guess)
        ).run()
        assert result.ok, result.describe()
    right = sipp("register", remote=pbx.sip_address, service="1000", auth=("1000", "pw-1000"))
    assert not right.run().ok  # 403 at once, no challenge
    assert "banned 127.0.0.1 for 600 s after 3 failed authentications" in pbx.log_tail(200)
