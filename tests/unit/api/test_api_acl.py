"""Address control (spec 5.2)."""

from __future__ import annotations

import pytest

from pypbx.api.acl import AddressControl


def test_empty_lists_allow_everyone() -> None:
    control = AddressControl([], [])
    assert control.is_allowed("203.0.113.9")
    assert control.is_allowed(None)


def test_denied_carved_out_of_allowed_network() -> None:
    control = AddressControl(["192.168.0.0/16"], ["192.168.1.15"])
    assert control.is_allowed("192.168.7.1")
    assert not control.is_allowed("192.168.1.15")
    assert not control.is_allowed("10.0.0.1")


def test_denied_only() -> None:
    control = AddressControl([], ["10.0.0.0/8"])
    assert control.is_allowed("127.0.0.1")
    assert not control.is_allowed("10.1.2.3")


def test_loopback_is_not_special() -> None:
    assert not AddressControl(["192.168.0.0/16"], []).is_allowed("127.0.0.1")


def test_ipv6_and_mapped_ipv4() -> None:
    control = AddressControl(["192.168.0.0/16", "2001:db8::/32"], [])
    assert control.is_allowed("::ffff:192.168.1.1")
    assert control.is_allowed("2001:db8::1")
    assert control.is_allowed("fe80::1%eth0") is False
    assert not control.is_allowed("2001:db9::1")


def test_unknown_peer_is_not_trusted_when_lists_are_set() -> None:
    control = AddressControl(["0.0.0.0/0"], [])
    assert not control.is_allowed(None)
    assert not control.is_allowed("not-an-ip")


def test_host_bits_set_are_accepted_and_bad_entries_fail_early() -> None:
    assert AddressControl(["192.168.1.15/16"], []).is_allowed("192.168.200.1")
    with pytest.raises(ValueError):
        AddressControl(["192.168.0.0/33"], [])
