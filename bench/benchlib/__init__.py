"""Shared helpers of the benchmarks in bench/ (kept in a package so `make bench`, which runs
every bench/*.py, does not run them as benchmarks of their own)."""
