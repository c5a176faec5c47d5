"""pypbx.api."""
