"""Kill-switch propagation benchmark: ``python -m bench.switches``."""
