"""Harnesses that drive real SIP peers (SIPp, baresip) and a pypbx subprocess in tests.

They live outside the pypbx package because they are test infrastructure: every peer is
configured from scratch, bound to 127.0.0.1 and given ports from :mod:`peers.ports`, so
tests can run in parallel under pytest-xdist without stepping on each other.
"""
