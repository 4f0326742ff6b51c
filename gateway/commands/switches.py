"""`casegate kill`: engage, release and list kill switches over the operator API.

Usage::

    casegate kill engage SCOPE --reason "incident 42" [--mode halt|degrade] [--url URL]
    casegate kill release SCOPE --reason "resolved"
    casegate kill list [--json]

The token comes from ``CASEGATE_TOKEN`` (an operator with ``incident_responder`` to
flip). Exit status: 0 done, 1 the gateway refused (the error is printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from gateway.commands.remote import Remote, RemoteError

__all__ = ["register"]


def _print_state(state: dict[str, Any]) -> None:
    switches = state.get("switches") or []
    print(f"state version {state.get('version')}: {len(switches)} switch(es) engaged")
    for s in switches:
        print(f"  {s['scope']:<40} {s['mode']:<8} by {s['engaged_by']} at {s['engaged_at']}")
        print(f"  {'':<40} reason: {s['reason']}")
    acks = state.get("acknowledged_by") or []
    behind = [a for a in acks if a["version"] != state.get("version")]
    print(f"acknowledged by {len(acks) - len(behind)} of {len(acks)} live worker(s)")
    for a in behind:
        print(f"  behind: {a['replica']} worker {a['worker']} at version {a['version']}")


def _run(args: argparse.Namespace, method: str, path: str, body: Any = None) -> int:
    try:
        state = Remote.from_env(args.url).call(method, path, body)
    except RemoteError as exc:
        print(f"casegate: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(state, indent=2))
    else:
        _print_state(state)
    return 0


def cmd_engage(args: argparse.Namespace) -> int:
    body = {"scope": args.scope, "mode": args.mode, "reason": args.reason}
    return _run(args, "POST", "/admin/kill-switches", body)


def cmd_release(args: argparse.Namespace) -> int:
    scope = urllib.parse.quote(args.scope, safe="")
    return _run(args, "DELETE", f"/admin/kill-switches/{scope}", {"reason": args.reason})


def cmd_list(args: argparse.Namespace) -> int:
    return _run(args, "GET", "/admin/kill-switches")


def register(sub: Any) -> None:
    from gateway.commands import add_remote_args

    kill = sub.add_parser("kill", help="kill switches (over the operator API)")
    actions = kill.add_subparsers(dest="sub", required=True)
    engage = actions.add_parser("engage", help="engage (or re-engage) a switch")
    engage.add_argument(
        "scope", help="global, use_case:X, action_class:X, route:X, model:M, tool:T"
    )
    engage.add_argument("--reason", required=True, help="why (recorded in lineage)")
    engage.add_argument("--mode", choices=("halt", "degrade"), default="halt")
    release = actions.add_parser("release", help="release a switch")
    release.add_argument("scope")
    release.add_argument("--reason", required=True, help="why (recorded in lineage)")
    listing = actions.add_parser("list", help="engaged switches and acknowledgements")
    for parser in (engage, release, listing):
        add_remote_args(parser)
        parser.add_argument("--json", action="store_true", help="print the raw answer")
    engage.set_defaults(func=cmd_engage)
    release.set_defaults(func=cmd_release)
    listing.set_defaults(func=cmd_list)
