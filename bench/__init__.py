"""Benchmarks (not part of the installed distribution): ``bench.redaction``, ``bench.gateway``."""
