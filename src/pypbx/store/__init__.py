"""pypbx.store."""
