"""Durations as bundles write them (DESIGN 10.16).

    >>> parse_duration("24h")
    86400

An integer of ASCII digits followed by one unit letter: ``s``, ``m``, ``h`` or ``d``.
Nothing else is accepted (no spaces, signs, fractions or compound forms such as
``1h30m``), so a bundle reads the same to every tool that parses it.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DURATION_S", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+)([smhd])", re.ASCII)

#: Ten years. Longer is a typo, and would overflow the date arithmetic of some stores.
MAX_DURATION_S = 3650 * 86400


def parse_duration(text: str) -> int:
    """Return the number of seconds *text* denotes; raise `ValueError` otherwise."""
    if not isinstance(text, str):
        raise ValueError("expected a duration such as 24h (an integer and s, m, h or d)")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("expected a duration such as 24h (an integer and s, m, h or d)")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError("a duration must be at most 3650d")
    return seconds
