"""pypbx: an open-source IP PBX wire-compatible with the Ozeki Phone System HTTP API."""

from pypbx.core_build import choose as _choose

__version__ = "0.1.0"
# "compiled (N modules)" or "interpreted (why)": before any compiled module can be imported.
CORE = _choose()
