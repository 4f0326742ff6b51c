"""`casegate demo`: a scripted support morning against a running gateway, as a transcript.

Usage::

    casegate serve                 # terminal 1: the embedded default
    casegate demo                  # terminal 2, same directory (reads casegate-demo.env)
    casegate demo --url http://127.0.0.1:8080 --env-file path/to/casegate-demo.env

Each step makes real calls (the client API with the demo client key, the operator API
with the demo operator token) and names the console page that shows the result. A step
whose endpoint this build does not have prints "not available in this build" and the
morning goes on. Exit status: 0, or 1 when the gateway cannot be reached or a step
answered something unexpected.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["register", "run_demo"]

ENV_FILE = "casegate-demo.env"
CUSTOMER = {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="a scripted support morning against a running gateway (embedded default)",
        description="Walk through triage, refusal, automation, approval, kill switch, "
        "lineage and scorecard against a running gateway, printing a transcript.",
    )
    p.add_argument("--url", help="the gateway (default: $CASEGATE_URL or http://127.0.0.1:8080)")
    p.add_argument(
        "--env-file",
        default=None,
        help=f"the demo credentials (default: ./{ENV_FILE}, written by `casegate serve`)",
    )
    p.add_argument("--case", default=None, help="the case id to use (default: a fresh one)")
    p.set_defaults(func=lambda args: run_demo(args.url, args.env_file, args.case))


class NotAvailable(Exception):
    """The gateway answered 404/405 for the path itself: this build lacks the endpoint."""


class Unexpected(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        err = self.data.get("error") if isinstance(self.data, dict) else None
        return err if isinstance(err, dict) else {}


@dataclass
class Gateway:
    url: str
    client_key: str
    operator_token: str

    def _send(
        self, method: str, path: str, token: str, body: Any, headers: dict[str, str]
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                **headers,
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, raw, hdrs = exc.code, exc.read(), dict(exc.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        answer = Answer(status, parsed, {k.lower(): v for k, v in hdrs.items()})
        message = str(answer.error.get("message", ""))
        if status == 405 or (status == 404 and message.startswith("No such path")):
            raise NotAvailable(f"{method} {path.split('?')[0]}")
        return answer

    def chat(
        self,
        use_case: str,
        case_id: str,
        text: str,
        *,
        headers: dict[str, str] | None = None,
        context: dict[str, Any] | None = None,
        customer: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Answer:
        body: dict[str, Any] = {
            "model": "support-default",
            "messages": [{"role": "user", "content": text}],
            "casegate": {
                "customer": CUSTOMER if customer is None else customer,
                "context": {"product_id": "P-100", "account_status": "active"}
                if context is None
                else context,
            },
        }
        if tools:
            body["tools"] = tools
        hdrs = {"X-Casegate-Use-Case": use_case, "X-Casegate-Case-Id": case_id, **(headers or {})}
        return self._send("POST", "/v1/chat/completions", self.client_key, body, hdrs)

    def client(self, method: str, path: str, body: Any = None) -> Answer:
        return self._send(method, path, self.client_key, body, {})

    def admin(self, method: str, path: str, body: Any = None) -> Answer:
        return self._send(method, path, self.operator_token, body, {})


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.removeprefix("export ").strip()] = value.strip().strip("'\"")
    return out


def _tool(name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": props}},
    }


class Transcript:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.n = 0
        self.failures = 0
        self.missing: list[str] = []

    def step(self, title: str, page: str) -> None:
        self.n += 1
        self.out("")
        self.out(f"{self.n}. {title}")
        self.out(f"   console: {page}")

    def say(self, text: str) -> None:
        self.out(f"   {text}")

    def run(self, title: str, page: str, body: Callable[[], None]) -> None:
        self.step(title, page)
        try:
            body()
        except NotAvailable as exc:
            self.missing.append(str(exc))
            self.say(f"not available in this build ({exc})")
        except Unexpected as exc:
            self.failures += 1
            self.say(f"UNEXPECTED: {exc}")


def _cg(answer: Answer) -> dict[str, Any]:
    data = answer.data if isinstance(answer.data, dict) else {}
    cg = data.get("casegate")
    return cg if isinstance(cg, dict) else {}


def _expect(answer: Answer, status: int, what: str) -> None:
    if answer.status != status:
        err = answer.error
        detail = f"{err.get('code')}: {err.get('message')}" if err else str(answer.data)[:200]
        raise Unexpected(f"{what}: expected {status}, got {answer.status} ({detail})")


def _names(values: Any) -> str:
    return ", ".join(str(v) for v in values) if values else "none"


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def morning(gw: Gateway, case_id: str, t: Transcript) -> None:
    base = gw.url + "/console"
    state: dict[str, Any] = {}

    def triage() -> None:
        text = "My parcel is late. Mail me at ann@example.com or call +44 20 7946 0958."
        t.say(f'customer writes: "{text}"')
        t.say("context sent: product_id, account_status, email, loyalty_notes")
        ans = gw.chat(
            "triage",
            case_id,
            text,
            context={
                "product_id": "P-100",
                "account_status": "active",
                "email": "ann@example.com",
                "loyalty_notes": "called three times",
            },
        )
        _expect(ans, 200, "triage call")
        cg = _cg(ans)
        state["triage_lineage"] = cg.get("lineage_id")
        t.say(f"decision {cg.get('decision')}, action class {cg.get('action_class_applied')}")
        t.say(f"PII redacted before the model saw it: {_counts(cg.get('redactions'))}")
        fields = cg.get("fields") or {}
        t.say(
            f"fields used: {_names(fields.get('used'))}; stripped: {_names(fields.get('stripped'))}"
        )
        t.say(f"lineage id {cg.get('lineage_id')}")

    def ineligible() -> None:
        t.say("a customer who did not consent to AI assistance (consent.ai_assist = false)")
        ans = gw.chat(
            "triage",
            case_id,
            "Please look at my order",
            customer={"authenticated": True, "consent": {"ai_assist": False}, "region": "GB"},
        )
        _expect(ans, 403, "ineligible call")
        err = ans.error
        t.say(
            f"refused {ans.status} {err.get('code')}, rule {err.get('param')!r}: "
            "nothing went upstream"
        )
        t.say(f"decision header: {ans.headers.get('x-casegate-decision')}")

    def automation() -> None:
        t.say(
            "automation call offering two tools: set_priority (allowlisted, enum [P2]) "
            "and close_account (not on the allowlist)"
        )
        ans = gw.chat(
            "triage",
            case_id,
            "Customer is furious, prioritise this.",
            headers={"X-Casegate-Action-Class": "automation"},
            tools=[
                _tool("set_priority", {"priority": {"type": "string", "enum": ["P2"]}}),
                _tool("close_account", {}),
            ],
        )
        _expect(ans, 200, "automation call")
        cg = _cg(ans)
        msg = (ans.data.get("choices") or [{}])[0].get("message") or {}
        calls = [
            f"{c['function']['name']}({c['function']['arguments']})"
            for c in msg.get("tool_calls") or []
        ]
        t.say("close_account was removed before the call went upstream: the model never saw it")
        t.say(f"allowed tool call returned: {_names(calls)} (decision {cg.get('decision')})")
        t.say("now the model proposes route_to_queue(queue=legal): 'legal' is outside the enum")
        ans = gw.chat(
            "triage",
            case_id,
            "Send this to legal.",
            headers={"X-Casegate-Action-Class": "automation"},
            tools=[_tool("route_to_queue", {"queue": {"type": "string", "enum": ["legal"]}})],
        )
        if ans.status == 403:
            t.say(f"blocked: {ans.status} {ans.error.get('code')}")
            return
        _expect(ans, 200, "blocked tool call")
        cg = _cg(ans)
        t.say(
            f"blocked tool call: {_names(cg.get('tool_calls_blocked'))}; the answer was "
            f"downgraded to a {cg.get('action_class_applied')} (decision {cg.get('decision')})"
        )

    def draft() -> None:
        text = "I was charged twice, my card ends 4242. Can you refund me at ann@example.com?"
        t.say(f'customer writes: "{text}"')
        ans = gw.chat("reply_drafting", case_id, text, context={"product_id": "P-100"})
        _expect(ans, 200, "draft call")
        approval = _cg(ans).get("approval") or {}
        draft_id = approval.get("id")
        t.say(
            f"draft {draft_id}: status {approval.get('status')}, "
            f"expires {approval.get('expires_at')}"
        )
        queue = gw.admin("GET", "/admin/drafts?status=pending")
        _expect(queue, 200, "draft queue")
        pending = [d for d in queue.data.get("data") or [] if d.get("id") == draft_id]
        if pending:
            t.say(
                f"in the approval queue: case {pending[0].get('case_id')}, "
                f"redactions {_counts(pending[0].get('redactions'))}"
            )
        edited = (
            "Hello Ann, we have refunded the duplicate charge. It will reach your card in 3-5 days."
        )
        ans = gw.admin(
            "POST",
            f"/admin/drafts/{quote(str(draft_id), safe='')}/approve",
            {"edited_text": edited},
        )
        _expect(ans, 200, "approve")
        t.say(f'approver edits and approves: "{edited}"')
        t.say(f"release token (EdDSA JWS): {str(ans.data.get('release_token'))[:32]}...")
        seen = gw.client("GET", f"/v1/drafts/{quote(str(draft_id), safe='')}")
        _expect(seen, 200, "draft status")
        t.say(f"the support app polls GET /v1/drafts/{draft_id}: {seen.data.get('status')}")

    def switch() -> None:
        scope = "use_case:triage"
        ans = gw.admin(
            "POST",
            "/admin/kill-switches",
            {
                "scope": scope,
                "mode": "halt",
                "reason": "demo: bad answers reported in triage",
            },
        )
        _expect(ans, 200, "engage")
        t.say(
            f"incident responder engages halt on {scope} (state version {ans.data.get('version')})"
        )
        try:
            ans = gw.chat("triage", case_id, "Where is my order?")
            t.say(
                f"a triage call now: {ans.status} "
                f"{ans.error.get('code') or _cg(ans).get('decision')}"
            )
        finally:
            rel = gw.admin(
                "DELETE", f"/admin/kill-switches/{quote(scope, safe='')}?reason=demo%3A+fixed"
            )
        _expect(rel, 200, "release")
        t.say(f"released (state version {rel.data.get('version')})")
        ans = gw.chat("triage", case_id, "Where is my order?")
        t.say(
            f"the same call again: {ans.status} {_cg(ans).get('decision') or ans.error.get('code')}"
        )

    def outcome() -> None:
        lineage_id = state.get("triage_lineage")
        if not lineage_id:
            raise Unexpected("no triage lineage id to report an outcome on")
        ans = gw.client(
            "POST",
            f"/v1/lineage/{quote(str(lineage_id), safe='')}/outcome",
            {"type": "resolved_first_contact", "handle_time_s": 312},
        )
        _expect(ans, 200, "outcome")
        t.say("the support app reports the first call resolved at first contact (312 s)")

    def lineage() -> None:
        ans = gw.admin("GET", f"/admin/lineage?case_id={quote(case_id, safe='')}")
        _expect(ans, 200, "lineage")
        records = ans.data.get("data") or []
        t.say(f"{len(records)} calls recorded for {case_id}, oldest first:")
        for r in records:
            fields = r.get("fields") or {}
            tools = r.get("tool_calls") or {}
            extra = []
            if r.get("refusal"):
                refusal = r["refusal"]
                extra.append(
                    f"refusal {refusal.get('code') if isinstance(refusal, dict) else refusal}"
                )
            if fields.get("stripped"):
                extra.append(f"stripped {_names(fields.get('stripped'))}")
            if tools.get("allowed") or tools.get("blocked"):
                extra.append(
                    f"tools allowed {_names(tools.get('allowed'))} / "
                    f"blocked {_names(tools.get('blocked'))}"
                )
            if r.get("approval"):
                extra.append(f"approval {(r['approval'] or {}).get('status')}")
            if r.get("outcome"):
                out = r["outcome"]
                extra.append(f"outcome {out.get('type') if isinstance(out, dict) else out}")
            t.say(
                f"- {r.get('use_case')}: {r.get('decision')}, "
                f"{r.get('action_class_applied') or '-'}"
                + (f"; {'; '.join(extra)}" if extra else "")
            )
        t.say("no message text, argument values or raw identifiers are in these records")

    def scorecard() -> None:
        ans = gw.admin("GET", "/admin/scorecard?group_by=use_case")
        _expect(ans, 200, "scorecard")
        total = ans.data.get("total") or {}
        keys = (
            "calls",
            "ai_assisted",
            "refusals",
            "policy_exceptions",
            "manual_override_rate",
            "kill_switch_refusals",
            "first_contact_resolution_rate",
            "lineage_complete",
        )
        t.say(f"last 7 days ({ans.data.get('from')} to {ans.data.get('to')}):")
        for key in keys:
            t.say(f"  {key}: {json.dumps(total.get(key))}")

    steps: list[tuple[str, str, Callable[[], None]]] = [
        (
            "A triage call: PII redacted, extra fields stripped",
            f"{base}/lineage?case_id={quote(case_id)}",
            triage,
        ),
        (
            "A customer without consent is refused",
            f"{base}/lineage?case_id={quote(case_id)}",
            ineligible,
        ),
        (
            "Automation: one tool call allowed, one kept out, one blocked",
            f"{base}/lineage?case_id={quote(case_id)}",
            automation,
        ),
        ("A reply draft, approved with an edit", f"{base}/drafts?status=approved", draft),
        ("A kill switch flipped and released", f"{base}/switches", switch),
        (
            "Outcome feedback from the support app",
            f"{base}/lineage?case_id={quote(case_id)}",
            outcome,
        ),
        (f"The lineage of case {case_id}", f"{base}/lineage?case_id={quote(case_id)}", lineage),
        ("The scorecard", f"{base}/scorecard", scorecard),
    ]
    for title, page, body in steps:
        t.run(title, page, body)


def run_demo(url: str | None, env_file: str | None, case_id: str | None) -> int:
    base = (url or os.environ.get("CASEGATE_URL") or "http://127.0.0.1:8080").rstrip("/")
    path = Path(env_file or ENV_FILE)
    if not path.is_file():
        print(
            f"casegate demo: {path} not found. Run `casegate serve` (no config) in this directory "
            "first, or pass --env-file."
        )
        return 1
    env = read_env_file(path)
    client_key = env.get("CASEGATE_DEMO_CLIENT_KEY")
    token = env.get("CASEGATE_DEMO_OPERATOR_TOKEN")
    if not client_key or not token:
        print(
            f"casegate demo: {path} lacks CASEGATE_DEMO_CLIENT_KEY or CASEGATE_DEMO_OPERATOR_TOKEN"
        )
        return 1
    gw = Gateway(base, client_key, token)
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as resp:  # noqa: S310
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"casegate demo: the gateway at {base} does not answer ({reason}). Start it with "
            "`casegate serve` in another terminal."
        )
        return 1
    case_id = case_id or f"CASE-{secrets.randbelow(9000) + 1000}"
    t = Transcript()
    t.out(f"Casegate demo: a support morning on {base}, case {case_id}")
    t.out(f"Sign in to the console at {base}/console with CASEGATE_DEMO_OPERATOR_TOKEN from {path}")
    try:
        morning(gw, case_id, t)
    except (urllib.error.URLError, OSError) as exc:
        t.out(f"casegate demo: lost the gateway: {getattr(exc, 'reason', exc)}")
        return 1
    t.out("")
    if t.missing:
        t.out("Not available in this build: " + "; ".join(t.missing))
    t.out("Done." if not t.failures else f"Done, with {t.failures} unexpected answer(s).")
    return 1 if t.failures else 0
