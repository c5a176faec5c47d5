"""pypbx: an open-source IP PBX wire-compatible with the Ozeki Phone System HTTP API."""

__version__ = "0.1.0"
