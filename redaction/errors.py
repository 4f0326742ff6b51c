"""The two errors the redaction package raises on purpose.

    try:
        redactor = Redactor(["EMAIL", "PASSPORT"])
    except UnknownEntityError as exc:   # a bundle names an entity we have no detector for
        ...

`RedactionError` means a detector failed while scanning: the gateway must fail the
call closed rather than send the text upstream unscanned.
"""

from __future__ import annotations

__all__ = ["RedactionError", "UnknownEntityError"]


class UnknownEntityError(ValueError):
    """An entity name that no built-in recognizer (or extra recognizer) detects."""


class RedactionError(RuntimeError):
    """A detector failed; the text must not leave unscanned."""
