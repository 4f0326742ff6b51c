"""Test kit: reusable helpers for the Casegate test suite (upstream stub, ...)."""
