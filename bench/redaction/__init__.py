"""Redaction benchmark: precision/recall on a committed corpus, throughput, latency."""
