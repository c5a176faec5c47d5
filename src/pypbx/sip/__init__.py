"""pypbx.sip."""
