"""`casegate` sub-commands: drafts.

Usage::

    register(sub)       # called by gateway.commands.register_all
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    return None
