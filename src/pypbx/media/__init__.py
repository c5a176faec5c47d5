"""pypbx.media."""
