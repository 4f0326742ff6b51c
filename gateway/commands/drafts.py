"""`casegate drafts` sub-commands, over the operator API (role ``approver``).

Usage::

    casegate drafts list [--status pending|approved|rejected|expired] [--json]
    casegate drafts approve DFT_ID [--text "edited text" | --text-file F]   # prints the token
    casegate drafts reject DFT_ID --reason "wrong tone"

They read ``--url`` / ``CASEGATE_URL`` and the token from ``CASEGATE_TOKEN``. Exit
status: 0 done, 1 refused by the gateway (e.g. 409 ``draft_already_decided``), 2 usage.
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


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the gateway (default: $CASEGATE_URL or http://127.0.0.1:8080)"
    )


def register(sub: Any) -> None:
    drafts = sub.add_parser("drafts", help="the draft approval queue (approver)")
    verbs = drafts.add_subparsers(dest="drafts_command", required=True)

    show = verbs.add_parser("list", help="drafts, oldest first, with the turns they answer")
    show.add_argument(
        "--status", choices=("pending", "approved", "rejected", "expired"), default="pending"
    )
    show.add_argument("--json", action="store_true", help="print the drafts as JSON")
    _add_url(show)
    show.set_defaults(func=cmd_list)

    approve = verbs.add_parser("approve", help="approve a draft; prints its release token")
    approve.add_argument("draft_id")
    text = approve.add_mutually_exclusive_group()
    text.add_argument("--text", help="release this edited text instead of the draft's")
    text.add_argument("--text-file", help="release the edited text in this UTF-8 file")
    _add_url(approve)
    approve.set_defaults(func=cmd_approve)

    reject = verbs.add_parser("reject", help="reject a draft")
    reject.add_argument("draft_id")
    reject.add_argument("--reason", required=True)
    _add_url(reject)
    reject.set_defaults(func=cmd_reject)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    try:
        api = Remote.from_env(args.url)
        return api.call(method, path, body)
    except RemoteError as exc:
        print(f"casegate: {exc}", file=sys.stderr)
        raise SystemExit(2 if exc.status == 0 else 1) from None


def cmd_list(args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"status": args.status, **({"cursor": cursor} if cursor else {})}
        page = _call(args, "GET", "/admin/drafts?" + urllib.parse.urlencode(query))
        items += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if args.json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return 0
    if not items:
        print(f"no {args.status} drafts")
    for d in items:
        print(
            f"{d['id']}  {d['status']}  case {d.get('case_id') or '-'}  {d['use_case']}"
            f"  expires {d['expires_at']}"
        )
        for turn in d.get("customer_turns") or []:
            print("  customer> " + turn.replace("\n", "\n            "))
        if d.get("text") is not None:
            print("  draft>    " + str(d["text"]).replace("\n", "\n            "))
        print()
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.text is not None:
        body["edited_text"] = args.text
    elif args.text_file is not None:
        body["edited_text"] = Path(args.text_file).read_text(encoding="utf-8")
    path = f"/admin/drafts/{urllib.parse.quote(args.draft_id, safe='')}/approve"
    result = _call(args, "POST", path, body)
    print(result["release_token"])
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    path = f"/admin/drafts/{urllib.parse.quote(args.draft_id, safe='')}/reject"
    result = _call(args, "POST", path, {"reason": args.reason})
    print(f"{result['id']} rejected at {result['decided_at']}")
    return 0
