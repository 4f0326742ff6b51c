"""The errors `policies` raises.

try:
    loaded = load_bundle_file(path)
except BundleError as exc:
    for where, message in exc.errors: ...

ValueError
├── BundleError    an unreadable or invalid bundle (every error, with its path)
├── ScopeError     a kill-switch scope that names nothing (carries the valid scopes)
└── FactsError     request facts of the wrong shape (carries the path of the bad key)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["BundleError", "FactsError", "ScopeError"]


class BundleError(ValueError):
    """A bundle failed to load. ``str(e)`` is one ``SOURCE: PATH: MESSAGE`` line per error.

    PATH is a dotted path into the bundle (``use_cases.triage.eligibility[1].rule``),
    ``line N`` for YAML syntax errors, or ``(top level)`` for the document as a whole.
    """

    def __init__(self, source: str, errors: Iterable[tuple[str, str]]) -> None:
        self.source = source
        self.errors: list[tuple[str, str]] = list(errors)
        super().__init__("\n".join(f"{source}: {path}: {message}" for path, message in self.errors))


class ScopeError(ValueError):
    """A kill-switch scope that names nothing; ``valid`` lists the scopes that do."""

    def __init__(self, scope: str, valid: Sequence[str]) -> None:
        self.scope = scope
        self.valid: list[str] = list(valid)
        super().__init__(f"unknown scope {scope!r}; valid scopes: {', '.join(self.valid)}")


class FactsError(ValueError):
    """Customer facts of the wrong shape; ``path`` names the key (``customer.region``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")
