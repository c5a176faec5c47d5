"""Which of our addresses a peer can reach us on.

A PBX listening on 0.0.0.0 must still write a concrete address into Via, Contact and SDP.
Asking the kernel which source address it would use towards the peer gives the right answer
on loopback, on a LAN and on multi-homed hosts, without configuration.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


@lru_cache(maxsize=1024)
def route_source_address(peer_ip: str) -> str:
    """The local address the kernel would use to send to `peer_ip` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(peer_ip).version == 6 else socket.AF_INET
    except ValueError:
        return "127.0.0.1"
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer_ip, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"


def advertised_address(bind_host: str, configured: str | None, peer_ip: str) -> str:
    """The address to advertise to `peer_ip`: configured > bound > routed."""
    if configured:
        return configured
    if not is_wildcard(bind_host):
        return bind_host
    return route_source_address(peer_ip)
