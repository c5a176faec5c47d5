"""pypbx.pbx."""
