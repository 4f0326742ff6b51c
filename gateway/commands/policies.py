"""`casegate policy ...` over the operator API (beside the local `casegate policy check`).

Usage::

    casegate policy apply FILE --reason "..." [--observe]   # store, then enforce/observe
    casegate policy promote V [--reason "..."]              # observe -> enforce
    casegate policy rollback [--to V] --reason "..."
    casegate policy diff --observed [--from D] [--to D] [--version V] [--json]
    casegate policy list [--json]

The token comes from ``CASEGATE_TOKEN``: ``admin`` to apply and promote,
``incident_responder`` to roll back, any operator to list and diff. Exit status: 0
done, 1 the gateway refused (the error is printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from gateway.commands.remote import Remote, RemoteError

__all__ = ["register"]


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    return Remote.from_env(args.url).call(method, path, body)


def _print_overview(state: dict[str, Any]) -> None:
    active, observed = state.get("active"), state.get("observed")
    if active:
        print(f"enforcing: {active['version']} (sha256 {active['sha256']})")
    if observed:
        print(f"observing: {observed['version']} (sha256 {observed['sha256']})")
    for h in (state.get("history") or [])[-5:]:
        print(f"  {h['at']}  {h['mode']:<8} {h['version']}  by {h['by']}: {h['reason']}")


def _finish(args: argparse.Namespace, answer: Any) -> int:
    if getattr(args, "json", False):
        print(json.dumps(answer, indent=2))
    else:
        _print_overview(answer)
    return 0


def _activate(args: argparse.Namespace, version: str, mode: str, reason: str) -> Any:
    path = f"/admin/policies/{urllib.parse.quote(version, safe='')}/activate"
    return _call(args, "POST", path, {"mode": mode, "reason": reason})


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = fn(args)
        except RemoteError as exc:
            print(f"casegate: {exc}", file=sys.stderr)
            return 1
        return code

    return run


@_guard
def cmd_apply(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return 2
    if not args.reason:
        args.reason = f"apply {Path(args.file).name}" + (" (observe)" if args.observe else "")
    stored = _call(args, "POST", "/admin/policies", {"bundle": text, "reason": args.reason})
    word = "stored" if stored["stored"] else "already stored"
    print(f"{stored['version']}: {word} (sha256 {stored['sha256']})")
    mode = "observe" if args.observe else "enforce"
    return _finish(args, _activate(args, stored["version"], mode, args.reason))


@_guard
def cmd_promote(args: argparse.Namespace) -> int:
    reason = args.reason or f"promote {args.version} to enforce"
    return _finish(args, _activate(args, args.version, "enforce", reason))


@_guard
def cmd_rollback(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    if args.to:
        body["to_version"] = args.to
    return _finish(args, _call(args, "POST", "/admin/policies/rollback", body))


@_guard
def cmd_list(args: argparse.Namespace) -> int:
    return _finish(args, _call(args, "GET", "/admin/policies"))


@_guard
def cmd_diff(args: argparse.Namespace) -> int:
    if not args.observed:
        print("casegate: policy diff needs --observed", file=sys.stderr)
        return 2
    query = {
        k: v for k, v in (("from", args.from_), ("to", args.to), ("version", args.version)) if v
    }
    path = "/admin/policy-observations"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    report = _call(args, "GET", path)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    versions = ", ".join(report["versions"]) or "none"
    print(f"{report['calls']} call(s) observed from {report['from']} to {report['to']}")
    print(f"observed version(s): {versions}")
    refuse = report["would_refuse"]
    codes = ", ".join(f"{k} {v}" for k, v in sorted(refuse["by_code"].items()))
    print(f"would refuse:         {refuse['total']}" + (f" ({codes})" if codes else ""))
    print(f"would allow:          {report['would_allow']} (refused now)")
    cls = report["action_class"]
    print(f"action class:         {cls['lowered']} lowered, {cls['raised']} raised")
    for title, key in (("tools blocked", "tools_blocked"), ("fields stripped", "fields_stripped")):
        items = ", ".join(f"{k} {v}" for k, v in sorted(report[key].items())) or "none"
        print(f"{title + ':':<22}{items}")
    return 0


def _policy_actions(sub: Any) -> Any:
    """The sub-commands of `casegate policy` (created by gateway.cli with `check`)."""
    parser = sub.choices.get("policy")
    if parser is None:
        parser = sub.add_parser("policy", help="policy bundles")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="sub", required=True)


def register(sub: Any) -> None:
    from gateway.commands import add_remote_args

    actions = _policy_actions(sub)
    apply = actions.add_parser("apply", help="store a bundle version and activate it")
    apply.add_argument("file")
    apply.add_argument("--observe", action="store_true", help="observe beside the enforcing one")
    apply.add_argument(
        "--reason", help="why (recorded in lineage; default: 'apply FILE [observe]')"
    )
    apply.set_defaults(func=cmd_apply)
    promote = actions.add_parser("promote", help="make a stored (observed) version enforce")
    promote.add_argument("version")
    promote.add_argument("--reason", help="why (default: 'promote V to enforce')")
    promote.set_defaults(func=cmd_promote)
    rollback = actions.add_parser("rollback", help="re-activate the previous version")
    rollback.add_argument("--to", help="the version to roll back to (default: the previous one)")
    rollback.add_argument("--reason", required=True, help="why (recorded in lineage)")
    rollback.set_defaults(func=cmd_rollback)
    listing = actions.add_parser("list", help="versions, the active one, the history")
    listing.set_defaults(func=cmd_list)
    diff = actions.add_parser("diff", help="what the observed version would have changed")
    diff.add_argument("--observed", action="store_true", required=True)
    diff.add_argument("--from", dest="from_", help="ISO 8601 date or datetime (default: 7 days)")
    diff.add_argument("--to", help="ISO 8601 date or datetime, exclusive (default: now)")
    diff.add_argument("--version", help="only this observed version")
    diff.set_defaults(func=cmd_diff)
    for parser in (apply, promote, rollback, listing, diff):
        add_remote_args(parser)
        parser.add_argument("--json", action="store_true", help="print the raw answer")
