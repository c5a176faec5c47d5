"""HA1 values stored with a SIP extension, so the registrar can check digests without
the plain password (which a site may choose not to keep)."""

from __future__ import annotations

from pypbx.sip.digest import compute_ha1


def ha1_values(authorization_name: str, realm: str, password: str) -> tuple[str, str]:
    """(MD5, SHA-256) HA1 over the digest user name, i.e. the AuthorizationName."""
    return (
        compute_ha1(authorization_name, realm, password, "MD5"),
        compute_ha1(authorization_name, realm, password, "SHA-256"),
    )
