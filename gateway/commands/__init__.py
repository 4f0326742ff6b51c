"""CLI commands that talk to a running gateway over the operator API, one module per area.

Usage::

    register_all(subparsers)     # called by gateway.cli.build_parser

Each module's ``register(sub)`` adds its sub-commands. They read ``--url`` /
``CASEGATE_URL`` (default http://127.0.0.1:8080) and the token from ``CASEGATE_TOKEN``.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.commands import demo, drafts, lineage, policies, switches

__all__ = ["register_all"]


def register_all(sub: Any) -> None:
    for module in (policies, switches, drafts, lineage, demo):
        module.register(sub)


def add_remote_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the gateway (default: $CASEGATE_URL or http://127.0.0.1:8080)"
    )
