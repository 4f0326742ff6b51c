"""`casegate` sub-commands: lineage show / verify, and the scorecard.

Usage::

    casegate lineage show CASE-1001 [--json]          # over the operator API (auditor)
    casegate scorecard --from 2026-11-01 --to 2026-11-08 [--group-by queue] [--json]
    casegate lineage verify --state URL | --config F | --export FILE [--public-keys JWKS]

``register(sub)`` adds ``scorecard``; ``register_lineage(lineage, verify)`` is called by
gateway.cli to add ``show`` to the ``lineage`` group it owns (argparse cannot add a
group twice) and ``--public-keys`` to ``verify``. ``verify`` recomputes every chain,
checks every signed checkpoint against them (a truncated tail shows) and each
checkpoint's Ed25519 signature: against ``--public-keys`` when given (pin the keys you
trust), else against the keys stored beside the checkpoints or carried by the export.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.commands.remote import Remote, RemoteError

__all__ = ["register", "register_lineage", "render_record", "verify_lineage_command"]


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the gateway (default: $CASEGATE_URL or http://127.0.0.1:8080)"
    )


def register(sub: Any) -> None:
    card = sub.add_parser("scorecard", help="the scorecard of a window (auditor)")
    card.add_argument("--from", dest="start", help="ISO 8601 date or datetime (inclusive)")
    card.add_argument("--to", dest="end", help="ISO 8601 date or datetime (exclusive)")
    card.add_argument("--group-by", choices=("queue", "segment", "use_case"), default="use_case")
    card.add_argument("--json", action="store_true", help="print the JSON answer")
    _add_url(card)
    card.set_defaults(func=cmd_scorecard)


def register_lineage(lineage: Any, verify: argparse.ArgumentParser) -> None:
    show = lineage.add_parser("show", help="a case's lineage as a timeline (auditor)")
    show.add_argument("case_id")
    show.add_argument("--json", action="store_true", help="print the records as JSON")
    _add_url(show)
    show.set_defaults(func=cmd_show)
    verify.add_argument(
        "--public-keys",
        help="a JWKS file of the checkpoint keys to trust (default: the stored/exported keys)",
    )


# -- remote commands ------------------------------------------------------------------


def _remote(args: argparse.Namespace) -> Remote | None:
    try:
        return Remote.from_env(args.url)
    except RemoteError as exc:
        print(f"casegate: {exc.message}", file=sys.stderr)
        return None


def cmd_show(args: argparse.Namespace) -> int:
    api = _remote(args)
    if api is None:
        return 2
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        while True:
            query = {"case_id": args.case_id, "limit": "500"}
            if cursor:
                query["cursor"] = cursor
            page = api.call("GET", "/admin/lineage?" + urllib.parse.urlencode(query))
            records.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    except RemoteError as exc:
        print(f"casegate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0
    if not records:
        print(f"Case {args.case_id}: no lineage records")
        return 0
    print(f"Case {args.case_id}: {len(records)} record(s), oldest first\n")
    for record in records:
        print(render_record(record))
        print()
    return 0


def _names(items: Any) -> str:
    return ", ".join(str(i) for i in items) if items else "-"


def render_record(r: dict[str, Any]) -> str:
    """A readable block for one record: what ran, on which data, what followed."""
    t = r.get("timings") or {}
    policy = r.get("policy") or {}
    head = (
        f"{t.get('started_at') or '?'}  {r['id']}  {r.get('use_case') or '?'}  "
        f"{r.get('decision') or '-'}  ({r.get('end') or 'no end event yet'})"
    )
    lines = [head]
    lines.append(
        f"  client {r.get('client')}, policy {policy.get('version')} ({policy.get('mode')}), "
        f"class {r.get('action_class_requested')} -> {r.get('action_class_applied') or '-'}"
    )
    if r.get("customer_ref"):
        ref = r["customer_ref"]
        lines.append(f"  customer ref {ref.get('hash', '')[:16]}... (key {ref.get('key_id')})")
    fields = r.get("fields") or {}
    lines.append(
        f"  data: used {_names(fields.get('used'))}; stripped {_names(fields.get('stripped'))}"
    )
    red = r.get("redactions") or {}
    lines.append("  redactions: " + (", ".join(f"{k} x{v}" for k, v in red.items()) or "none"))
    for check in r.get("checks") or []:
        on = check.get("on")
        on = ", ".join(on) if isinstance(on, list) else on
        ok = "" if "ok" not in check else (" ok" if check["ok"] else " FAILED")
        lines.append(f"  check {check.get('check')} on {on}{ok}")
    if r.get("kill_switches"):
        lines.append(f"  kill switches: {_names(r['kill_switches'])}")
    attempts = r.get("attempts") or []
    if r.get("route"):
        lines.append(
            f"  route {r['route']} -> {r.get('model_served') or 'no model'}"
            f" ({len(attempts)} attempt(s))"
        )
    for a in attempts:
        lines.append(
            f"    attempt {a.get('deployment')} #{a.get('attempt')}: {a.get('outcome')}"
            f" in {a.get('duration_ms')} ms"
        )
    tools = r.get("tool_calls") or {}
    if tools.get("allowed") or tools.get("blocked"):
        lines.append(
            f"  tool calls: allowed {_names(tools.get('allowed'))};"
            f" blocked {_names(tools.get('blocked'))}"
        )
    if r.get("refusal"):
        lines.append(f"  refusal: {r['refusal']}")
    approval = r.get("approval")
    if approval:
        extra = ""
        if approval.get("by"):
            extra = f" by {approval['by']}"
            if approval.get("edited"):
                extra += f" (edited, distance {approval.get('edit_distance')})"
            if isinstance(approval.get("latency_ms"), int):
                extra += f" after {approval['latency_ms'] / 1000:.0f} s"
        lines.append(f"  approval: draft {approval.get('id')} {approval.get('status')}{extra}")
    outcome = r.get("outcome")
    if outcome:
        handle = outcome.get("handle_time_s")
        lines.append(
            f"  outcome: {outcome.get('type')}"
            + (f", handled in {handle} s" if handle is not None else "")
        )
    if r.get("trace_id"):
        lines.append(f"  trace {r['trace_id']}")
    for e in r.get("events") or []:
        lines.append(f"    {e['at']}  {e['type']}  ({e['chain']} #{e['seq']})")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def cmd_scorecard(args: argparse.Namespace) -> int:
    api = _remote(args)
    if api is None:
        return 2
    query = {"group_by": args.group_by}
    if args.start:
        query["from"] = args.start
    if args.end:
        query["to"] = args.end
    try:
        card = api.call("GET", "/admin/scorecard?" + urllib.parse.urlencode(query))
    except RemoteError as exc:
        print(f"casegate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    print(f"Scorecard {card['from']} .. {card['to']} by {card['group_by']}")
    columns = [(str(g["key"]), g["figures"]) for g in card["groups"]]
    columns.append(("TOTAL", card["total"]))
    width = max(len(k) for k in card["total"]) + 2
    for key, figures in columns:
        print(f"\n[{key}]")
        for name, value in figures.items():
            print(f"  {name:<{width}}{_fmt(value)}")
    return 0


# -- local verification ----------------------------------------------------------------


def _load_keys(path: str | None) -> list[dict[str, Any]] | None:
    if not path:
        return None
    data = json.loads(Path(path).read_text())
    keys = data.get("keys", data.get("public_keys")) if isinstance(data, dict) else data
    if not isinstance(keys, list):
        raise ValueError(f"{path}: not a JWKS ({{'keys': [...]}}) nor a list of JWKs")
    return keys


def verify_lineage_command(
    args: argparse.Namespace, settings_for_local: Callable[[argparse.Namespace], Any]
) -> int:
    from gateway.checkpoints import verify_lineage

    try:
        pinned = _load_keys(getattr(args, "public_keys", None))
    except (OSError, ValueError) as exc:
        print(f"casegate: {exc}", file=sys.stderr)
        return 2
    if args.export:
        data = json.loads(Path(args.export).read_text())
        events = data.get("events", [])
        checkpoints = data.get("checkpoints", [])
        stored_keys = data.get("public_keys", [])
    else:
        from gateway.stores import open_store

        settings, _ = settings_for_local(args)

        async def run() -> tuple[list[Any], list[Any], list[Any]]:
            store = open_store(settings)
            await store.open()
            try:
                return (
                    await store.all_events(),
                    await store.checkpoints(),
                    await store.public_keys(),
                )
            finally:
                await store.close()

        events, checkpoints, stored_keys = asyncio.run(run())
    keys = pinned if pinned is not None else stored_keys
    report = verify_lineage(events, checkpoints, keys)
    source = "pinned" if pinned is not None else "stored"
    if report.ok:
        print(
            f"OK: {report.events} event(s) in {len(report.heads)} chain(s) verify; "
            f"{len(checkpoints)} signed checkpoint(s) verify against {len(keys)} {source} key(s)"
        )
        if not checkpoints:
            print("warning: no checkpoints: a truncated tail would not show")
        return 0
    for link in report.broken[:20]:
        where = f" (checkpoint at {link.checkpoint_at})" if link.checkpoint_at else ""
        print(f"BROKEN: chain {link.chain or '-'} at seq {link.seq}: {link.reason}{where}")
    return 1
