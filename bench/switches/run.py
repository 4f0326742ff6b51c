"""Kill-switch propagation: engage on replica A → refusal on replica B, over many flips.

    python -m bench.switches [--fanout redis|listen|poll] [--flips 200] [--probes 4]

``redis`` and ``listen``: two ``casegate serve --workers 2`` (A and B) sharing a fresh
PostgreSQL schema (and Redis for ``redis``). ``poll``: one SQLite gateway with two
workers; the engage goes through one connection and the probes through others, so most
probes land on the other worker. The upstream stub runs in this process.

Per flip: B is probed continuously by ``--probes`` keep-alive connections sending real
governed chat calls; the switch (``global``, halt) is engaged on A; the clock starts
when the engage call returns. Reported per flip:

- **first refusal**: until the first probe answer that is a 503 ``kill_switch_engaged``
  (an upper bound of the true figure: a probe already in flight when the switch lands
  still answers 200, so up to one probe round-trip is added);
- **all refusing**: until every probe connection has had its first refusal (the
  connections are spread over B's workers, so this is the slowest worker in practice);
- **acks**: until every worker of B has acknowledged the new state version (the ack is
  written right after the worker swapped its state; read from ``switch_acks``, ms
  resolution, same clock).

Then the switch is released and the next flip waits until every probe is served again,
plus a random pause (so flips do not fall in step with the poll timers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
PG = os.environ.get("CASEGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("CASEGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CHAT_BODY = {
    "model": "support-default",
    "messages": [{"role": "user", "content": "Where is my parcel?"}],
    "casegate": {
        "customer": {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"},
        "context": {"product_id": "P-100", "account_status": "active"},
    },
}


def _key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def config(stub_url: str, state: str, redis: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state": state,
        "routes": {
            "support-default": [
                {
                    "model": "openai/gpt-bench",
                    "api_base": stub_url,
                    "api_key_env": "BENCH_UPSTREAM",
                    "via": "openai",
                }
            ]
        },
        "clients": [{"name": "bench", "key_env": "BENCH_CLIENT", "use_cases": ["triage"]}],
        "operators": [{"name": "bench-oncall", "token_env": "BENCH_OPERATOR", "roles": ["admin"]}],
        "keys": {
            "customer_hash_env": "BENCH_CUSTOMER_KEY",
            "data_key_env": "BENCH_DATA_KEY",
            "signing_key_env": "BENCH_SIGNING_KEY",
        },
    }
    if redis:
        cfg["redis"] = redis
    return cfg


@dataclass
class Probe:
    """One keep-alive connection calling B back to back."""

    first_refusal: float | None = None
    served_since: float | None = None  # when it was last served after a release


@dataclass
class Flip:
    first_ms: float
    all_ms: float
    acks_ms: float | None


@dataclass
class Bench:
    a: str
    b: str
    client_key: str
    operator: str
    b_workers: int
    store: Any
    probes: list[Probe] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)
    engaged_at: float | None = None  # monotonic, when the engage call returned
    stop: bool = False

    async def probe_loop(self, probe: Probe) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        headers = {
            "Authorization": f"Bearer {self.client_key}",
            "X-Casegate-Use-Case": "triage",
        }
        async with aiohttp.ClientSession(connector=connector) as session:
            while not self.stop:
                sent = time.monotonic()
                async with session.post(
                    self.b + "/v1/chat/completions", json=CHAT_BODY, headers=headers
                ) as resp:
                    await resp.read()
                    status = resp.status
                now = time.monotonic()
                self.round_trips.append((now - sent) * 1000)
                if status == 503 and self.engaged_at is not None and probe.first_refusal is None:
                    probe.first_refusal = now
                elif status == 200:
                    probe.served_since = probe.served_since or now
                else:
                    probe.served_since = None

    async def flip(self, session: aiohttp.ClientSession, n: int) -> Flip:
        auth = {"Authorization": f"Bearer {self.operator}"}
        for probe in self.probes:
            probe.first_refusal = None
        wall_ms = 0
        async with session.post(
            self.a + "/admin/kill-switches",
            json={"scope": "global", "mode": "halt", "reason": f"bench flip {n}"},
            headers=auth,
        ) as resp:
            state = await resp.json()
            assert resp.status == 200, state
        self.engaged_at = time.monotonic()
        wall_ms = int(time.time() * 1000)
        version = state["version"]
        deadline = self.engaged_at + 5
        while any(p.first_refusal is None for p in self.probes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"flip {n}: not every probe refused within 5 s")
            await asyncio.sleep(0.001)
        times = [p.first_refusal - self.engaged_at for p in self.probes if p.first_refusal]
        acks = await self.ack_delay(version, wall_ms)
        self.engaged_at = None
        for probe in self.probes:
            probe.served_since = None
        async with session.delete(
            self.a + "/admin/kill-switches/global?reason=bench", headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
        deadline = time.monotonic() + 5
        while any(p.served_since is None for p in self.probes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"flip {n}: not every probe served again within 5 s")
            await asyncio.sleep(0.001)
        await asyncio.sleep(random.uniform(0.0, 0.15))
        return Flip(max(0.0, min(times)) * 1000, max(0.0, max(times)) * 1000, acks)

    async def ack_delay(self, version: int, wall_ms: int) -> float | None:
        """ms from the engage returning until every worker of B acknowledged *version*."""
        replica_b = self.b.rsplit(":", 1)[1]
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            acks = [
                a
                for a in await self.store.acknowledgements(wall_ms - 60_000)
                if a.replica.endswith(":" + replica_b) and a.version >= version
            ]
            if len(acks) >= self.b_workers:
                return float(max(0, max(a.at_ms for a in acks) - wall_ms))
            await asyncio.sleep(0.01)
        return None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # nearest rank
    return ordered[rank - 1]


async def measure(
    args: argparse.Namespace, a: str, b: str, env: dict[str, str], state: str
) -> tuple[list[Flip], list[float]]:
    from gateway.settings import Settings
    from gateway.stores import open_store

    store = open_store(Settings(state=state, base_dir=os.getcwd()))
    await store.open()
    bench = Bench(a, b, env["BENCH_CLIENT"], env["BENCH_OPERATOR"], args.workers, store)
    bench.probes = [Probe() for _ in range(args.probes)]
    tasks = [asyncio.create_task(bench.probe_loop(p)) for p in bench.probes]
    flips: list[Flip] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(args.warmup):
                await bench.flip(session, -1)
            for n in range(args.flips):
                flips.append(await bench.flip(session, n))
    finally:
        bench.stop = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
    return flips, bench.round_trips


def report(args: argparse.Namespace, flips: list[Flip], round_trips: list[float]) -> str:
    rows = [
        ("first refusal on B", [f.first_ms for f in flips]),
        ("every probe of B refusing", [f.all_ms for f in flips]),
        ("every worker of B acknowledged", [f.acks_ms for f in flips if f.acks_ms is not None]),
    ]
    lines = [
        f"# Kill-switch propagation ({args.fanout}), {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"`python -m bench.switches --fanout {args.fanout} --flips {args.flips} "
        f"--probes {args.probes}`; {platform.python_version()}, {os.cpu_count()} CPU(s), "
        f"{args.workers} workers per replica. Bar: 200 ms.",
        "",
        "| measure (ms after the engage call returned) | p50 | p90 | p99 | max | n |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in rows:
        if not values:
            continue
        lines.append(
            f"| {name} | {statistics.median(values):.1f} | {pct(values, 90):.1f} | "
            f"{pct(values, 99):.1f} | {max(values):.1f} | {len(values)} |"
        )
    lines += [
        "",
        f"A probe call to B (a governed chat call, lineage written) took p50 "
        f"{statistics.median(round_trips):.1f} ms, p99 {pct(round_trips, 99):.1f} ms "
        f"({len(round_trips)} calls): the refusal figures include up to one such round trip.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.switches", description=__doc__)
    parser.add_argument("--fanout", choices=("redis", "listen", "poll"), default="redis")
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tests.kit.gateway import GatewayProcess
    from tests.kit.stub import UpstreamStub

    env = {
        "BENCH_UPSTREAM": "sk-bench-" + secrets.token_urlsafe(12),
        "BENCH_CLIENT": "ck-bench-" + secrets.token_urlsafe(18),
        "BENCH_OPERATOR": "op-bench-" + secrets.token_urlsafe(18),
        "BENCH_CUSTOMER_KEY": _key(),
        "BENCH_DATA_KEY": _key(),
        "BENCH_SIGNING_KEY": _key(),
    }
    gateways: list[Any] = []
    with contextlib.ExitStack() as stack:
        stub = stack.enter_context(UpstreamStub(record=False))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-switches-")))
        if args.fanout == "poll":
            state = f"sqlite:///{tmp / 'casegate.db'}"
            cfg = config(stub.url, state, None)
        else:
            state = stack.enter_context(pg_schema())
            cfg = config(stub.url, state, REDIS if args.fanout == "redis" else None)
        try:
            a = GatewayProcess.start(tmp / "a", cfg, env=env, workers=args.workers, timeout_s=60)
            gateways.append(a)
            b = a
            if args.fanout != "poll":
                b = GatewayProcess.start(
                    tmp / "b", cfg, env=env, workers=args.workers, timeout_s=60
                )
                gateways.append(b)
            time.sleep(1.0)  # every worker up and subscribed
            flips, round_trips = asyncio.run(measure(args, a.url, b.url, env, state))
        finally:
            for gw in gateways:
                gw.stop()
    text = report(args, flips, round_trips)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"switches-{args.fanout}-{time.strftime('%Y%m%d-%H%M%S')}.md"
        out.write_text(text)
        raw = out.with_suffix(".json")
        raw.write_text(json.dumps([f.__dict__ for f in flips]))
        print(f"written: {out.relative_to(ROOT)}")
    return 0
