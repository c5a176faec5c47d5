"""Client address control (spec 5.2): allowed networks minus denied addresses -> else 307."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    # strict=False: `192.168.1.15/16` is read as the network containing it, as a human means.
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _parse_address(remote: str | None) -> IPAddress | None:
    if not remote:
        return None
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address


class AddressControl:
    """Allowed if (no allowed list, or inside an allowed network) and not in a denied entry.

    Loopback is not special-cased. Malformed configuration fails at construction.
    """

    def __init__(self, allowed: Iterable[str], denied: Iterable[str]) -> None:
        self._allowed = _parse_networks(allowed)
        self._denied = _parse_networks(denied)

    def is_allowed(self, remote: str | None) -> bool:
        if not self._allowed and not self._denied:
            return True
        address = _parse_address(remote)
        if address is None:  # e.g. a Unix socket peer: cannot be matched, so not trusted
            return False
        if self._allowed and not any(address in net for net in self._allowed):
            return False
        return not any(address in net for net in self._denied)
