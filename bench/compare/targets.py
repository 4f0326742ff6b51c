"""What ``bench.compare`` measures: each target's launch, request mix and configuration.

    targets = build(workdir, procs, ports, stack, litellm=True)

Every target answers ``POST /v1/chat/completions`` on 127.0.0.1 with the same ~2.4 KB
five-message conversation (`bench.gateway.workload`). One request in four of the mix
offers three tools (two allowlisted, one not); Casegate gets that one as an
``automation`` call, so the tool guard filters what goes upstream and judges the answer.

| target | what |
|---|---|
| direct | the stub itself |
| pass-through | `bench.gateway.passthrough` (Starlette + uvicorn + aiohttp, no parsing) |
| litellm-proxy | `litellm --config ... --num_workers 1`, no database, master key auth |
| casegate | every guardrail (below), SQLite, OTLP export to a local sink, one worker |
| casegate-no-otlp | as `casegate`, telemetry export off (what OTLP costs) |
| casegate-minimal | use case `bench_minimal`: no entities, context, rules or telemetry |
| casegate-2w | as `casegate`, `--workers 2` |
| casegate-pg | as `casegate`, state on PostgreSQL (a fresh schema, dropped at exit) |

"Every guardrail": client-key authentication, eligibility and consent (three rules),
minimisation of `casegate.context` (`email` stripped), redaction and restoration of
the e-mail addresses and phone numbers in the conversation, the tool guard on the
automation quarter, lineage start/end events durable in the store, a SERVER and a
CLIENT span per call exported over OTLP/HTTP to `bench.compare.otlp_sink`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compare import litellm_proxy
from bench.gateway import workload
from bench.gateway.run import PY, ROOT, Procs, Server, base_env, free_port

PG = os.environ.get("CASEGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PATH = "/v1/chat/completions"
#: Split by the stub into 4 word deltas + the finish chunk: a 5-chunk stream.
STUB_CONTENT = "Delivery trace raised today."
#: 1 in MIX_EVERY requests offers tools (Casegate: as an automation call).
MIX_EVERY = 4
#: Spans are exported every 200 ms (SDK default 5 s) and CPU is read 0.3 s after a
#: run, so the run's own exports are counted in its CPU.
OTLP_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "200"}
OTLP_SETTLE_S = 0.3

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "set_priority",
            "description": "Set the case priority.",
            "parameters": {
                "type": "object",
                "properties": {"priority": {"type": "string", "enum": ["P1", "P2", "P3"]}},
                "required": ["priority"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "route_to_queue",
            "description": "Move the case to a queue, with an optional note.",
            "parameters": {
                "type": "object",
                "properties": {
                    "queue": {"type": "string", "enum": ["billing", "shipping", "returns"]},
                    "note": {"type": "string"},
                },
                "required": ["queue"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "issue_refund",  # not in the allowlist: Casegate removes it
            "description": "Refund the order.",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number"}},
                "required": ["amount"],
            },
        },
    },
]

MINIMAL_USE_CASE = """
  # bench.compare: the cheapest governed call (no entities, no context, no rules).
  bench_minimal:
    route: support-default
    redaction: {entities: []}
    default_action_class: recommendation
    action_classes: {recommendation: {}}
"""


def bundle_text() -> str:
    """The default bundle under another version, plus the ``bench_minimal`` use case."""
    text = (ROOT / "policies" / "bundles" / "default.yaml").read_text()
    text = text.replace('version: "2026-11-28.1"', 'version: "bench-compare-1"', 1)
    return text.rstrip("\n") + "\n" + MINIMAL_USE_CASE


def b64key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@dataclass
class Variant:
    headers: dict[str, str]
    body: dict[str, Any]
    expect: str = ""

    def job(self, stream: bool) -> dict[str, Any]:
        body = dict(self.body, stream=True) if stream else self.body
        return {"headers": self.headers, "body": json.dumps(body), "expect": self.expect}


@dataclass
class Target:
    name: str
    launch: Callable[[Path], Server]
    headers: dict[str, str]
    variants: list[Variant]
    casegate: bool = False
    workers: int = 1
    otlp: bool = False
    server: Server | None = None
    cold_starts: list[float] = field(default_factory=list)

    def jobs(self, stream: bool) -> list[dict[str, Any]]:
        return [v.job(stream) for v in self.variants]

    def first_body(self) -> bytes:
        return json.dumps(self.variants[0].body).encode()


def openai_variants(model: str) -> list[Variant]:
    plain = {"model": model, "messages": workload.MESSAGES}
    tools = dict(plain, tools=TOOLS, tool_choice="auto")
    return [Variant({}, plain)] * (MIX_EVERY - 1) + [Variant({}, tools)]


def casegate_variants() -> list[Variant]:
    plain = {
        "model": "support-default",
        "messages": workload.MESSAGES,
        "casegate": workload.CASEGATE_FIELDS,
    }
    auto = dict(plain, tools=TOOLS, tool_choice="auto")
    proof = '"lineage_id"'  # the `casegate` object: the governed path ran
    return [Variant({}, plain, proof)] * (MIX_EVERY - 1) + [
        Variant({"X-Casegate-Action-Class": "automation"}, auto, proof)
    ]


def minimal_variants() -> list[Variant]:
    body = {"model": "support-default", "messages": workload.MESSAGES}
    return [Variant({"X-Casegate-Use-Case": "bench_minimal"}, body, '"lineage_id"')]


@contextlib.contextmanager
def pg_schemas() -> Iterator[Callable[[], str]]:
    """Hands out fresh PostgreSQL schemas (as state URLs); drops every one at exit."""
    import psycopg

    made: list[str] = []

    def new() -> str:
        schema = f"bench_cmp_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        return f"{PG}?options=-csearch_path%3D{schema}"

    try:
        yield new
    finally:
        if made:
            with psycopg.connect(PG, autocommit=True) as conn:
                for schema in made:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def casegate_config(stub_port: int, bundle: Path, state: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state": state,
        "policy_bundle": str(bundle),
        "routes": {
            "support-default": [
                {
                    "model": "openai/gpt-bench",
                    "api_base": f"http://127.0.0.1:{stub_port}/v1",
                    "via": "openai",
                    "api_key_env": "BENCH_UPSTREAM_KEY",
                }
            ]
        },
        "clients": [
            {
                "name": "bench",
                "key_env": "BENCH_KEY",
                "use_cases": ["triage", "reply_drafting", "bench_minimal"],
            }
        ],
        "operators": [{"name": "ops", "token_env": "BENCH_OPS", "roles": ["admin"]}],
    }
    if state.startswith("postgresql://"):
        cfg["keys"] = {
            "customer_hash_env": "BENCH_CUSTOMER_KEY",
            "data_key_env": "BENCH_DATA_KEY",
            "signing_key_env": "BENCH_SIGNING_KEY",
        }
    return cfg


@dataclass
class Ports:
    stub: int
    sink: int


def build(
    workdir: Path,
    procs: Procs,
    ports: Ports,
    new_schema: Callable[[], str] | None,
    *,
    litellm: bool,
    baseline: Path | None = None,
) -> list[Target]:
    """Every target, not yet started (``stub`` first: the others call it). With
    `baseline` (a checkout of another commit), also ``casegate-base``: the
    ``casegate`` target run from that checkout's packages."""
    secret_env = {
        "BENCH_UPSTREAM_KEY": "sk-bench-" + secrets.token_urlsafe(16),
        "BENCH_KEY": "cg-bench-" + secrets.token_urlsafe(24),
        "BENCH_OPS": "cg-ops-" + secrets.token_urlsafe(24),
        "BENCH_CUSTOMER_KEY": b64key(),
        "BENCH_DATA_KEY": b64key(),
        "BENCH_SIGNING_KEY": b64key(),
        "LITELLM_MASTER_KEY": "sk-" + secrets.token_hex(32),
    }
    bundle = workdir / "bench-bundle.yaml"
    bundle.write_text(bundle_text())
    upstream_auth = {"Authorization": f"Bearer {secret_env['BENCH_UPSTREAM_KEY']}"}

    def launch_stub(wd: Path) -> Server:
        args = [PY, "-m", "tests.kit.stub", "--port", str(ports.stub), "--content", STUB_CONTENT]
        log = wd / "stub.log"
        return Server(
            "direct", procs.spawn(args, cwd=ROOT, env=base_env(), log=log), ports.stub, log
        )

    def launch_passthrough(wd: Path) -> Server:
        port = free_port()
        upstream = f"http://127.0.0.1:{ports.stub}/v1"
        args = [PY, "-m", "bench.gateway.passthrough", "--port", str(port), "--upstream", upstream]
        log = wd / "passthrough.log"
        proc = procs.spawn(args, cwd=ROOT, env=base_env(), log=log)
        return Server("pass-through", proc, port, log)

    def launch_litellm(wd: Path) -> Server:
        port = free_port()
        cfg = wd / "litellm-config.yaml"
        cfg.write_text(litellm_proxy.config(ports.stub))
        env = litellm_proxy.environment(base_env() | secret_env)
        log = wd / "litellm.log"
        proc = procs.spawn(litellm_proxy.command(cfg, port), cwd=wd, env=env, log=log)
        return Server("litellm-proxy", proc, port, log)

    def casegate_launcher(
        name: str, *, workers: int, otlp: bool, pg: bool, source: Path | None = None
    ) -> Callable[..., Server]:
        def launch(wd: Path) -> Server:
            # A fresh state per start: a cold start includes migrations (and, on SQLite, keys).
            state_dir = wd / f"{name}-{uuid.uuid4().hex[:6]}"
            state_dir.mkdir()
            state = new_schema() if pg and new_schema else "sqlite:///casegate.db"
            cfg = state_dir / "casegate.yaml"
            cfg.write_text(json.dumps(casegate_config(ports.stub, bundle, state), indent=2))
            port = free_port()
            args = [PY, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(port)]
            args += ["--workers", str(workers)]
            env = base_env() | secret_env
            if source is not None:  # its packages before the installed (editable) ones
                env["PYTHONPATH"] = str(source)
            if otlp:
                env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.sink}"}
                env |= OTLP_ENV
            log = state_dir / "gateway.log"
            return Server(name, procs.spawn(args, cwd=state_dir, env=env, log=log), port, log)

        return launch

    cg_headers = {
        "Authorization": f"Bearer {secret_env['BENCH_KEY']}",
        "X-Casegate-Use-Case": "triage",
        "X-Casegate-Case-Id": "CASE-1",
    }
    ll_headers = {"Authorization": f"Bearer {secret_env['LITELLM_MASTER_KEY']}"}
    targets = [
        Target("direct", launch_stub, upstream_auth, openai_variants("gpt-bench")),
        Target("pass-through", launch_passthrough, upstream_auth, openai_variants("gpt-bench")),
    ]
    if litellm:
        targets.append(
            Target("litellm-proxy", launch_litellm, ll_headers, openai_variants("gpt-bench"))
        )
    cg = casegate_launcher
    targets += [
        Target(
            "casegate",
            cg("casegate", workers=1, otlp=True, pg=False),
            cg_headers,
            casegate_variants(),
            casegate=True,
            otlp=True,
        ),
        Target(
            "casegate-no-otlp",
            cg("casegate-no-otlp", workers=1, otlp=False, pg=False),
            cg_headers,
            casegate_variants(),
            casegate=True,
        ),
        Target(
            "casegate-minimal",
            cg("casegate-minimal", workers=1, otlp=False, pg=False),
            cg_headers,
            minimal_variants(),
            casegate=True,
        ),
        Target(
            "casegate-2w",
            cg("casegate-2w", workers=2, otlp=True, pg=False),
            cg_headers,
            casegate_variants(),
            casegate=True,
            workers=2,
            otlp=True,
        ),
    ]
    if baseline is not None:
        targets.append(
            Target(
                "casegate-base",
                cg("casegate-base", workers=1, otlp=True, pg=False, source=baseline),
                cg_headers,
                casegate_variants(),
                casegate=True,
                otlp=True,
            )
        )
    if new_schema is not None:
        targets.append(
            Target(
                "casegate-pg",
                cg("casegate-pg", workers=1, otlp=True, pg=True),
                cg_headers,
                casegate_variants(),
                casegate=True,
                otlp=True,
            )
        )
    return targets
