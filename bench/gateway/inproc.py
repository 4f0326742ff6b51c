"""Casegate's own CPU per call, in process: no HTTP server, no load generator.

    python -m bench.gateway.inproc                      # every guardrail + OTLP, c=1 and 8
    python -m bench.gateway.inproc --variant minimal    # or: no-otlp
    python -m bench.gateway.inproc --profile out.html   # pyinstrument of the c=8 run

For A/B work on the pipeline on a shared, noisy machine: the ASGI app of `bench.compare`'s
``casegate`` target (same config, bundle and request mix) is driven directly with ASGI
messages, so what is measured is the app, the aiohttp call to the upstream stub and
lineage on SQLite, by `time.process_time()` of this process (the OTLP export thread
included). The stub and the OTLP sink are child processes, not counted. uvicorn's HTTP
parsing and writing are left out: `bench.compare` measures the whole server.

Each run is `--requests` calls after a warm-up; the figure is the median of `--reps`
runs, interleaved across concurrency levels.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.compare import targets
from bench.compare.run import start_sink
from bench.gateway import workload
from bench.gateway.run import PY, ROOT, Procs, base_env, free_port
from tests.kit.asgi import asgi_call

PATH = b"/v1/chat/completions"
#: set in the child that `--callgrind` runs under valgrind: measured runs are instrumented
_CALLGRIND = os.environ.get("CASEGATE_INPROC_CALLGRIND") == "1"


def _start_stub(procs: Procs, workdir: Path) -> int:
    port = free_port()
    args = [PY, "-m", "tests.kit.stub", "--port", str(port), "--content", targets.STUB_CONTENT]
    procs.spawn(args, cwd=ROOT, env=base_env(), log=workdir / "stub.log")
    deadline = time.monotonic() + 30
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port
        time.sleep(0.05)
    raise RuntimeError("the stub did not start")


class Harness:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        msg = await self._from_app.get()
        if msg["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup failed: {msg}")

    async def stop(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await self._from_app.get()
        if self._lifespan is not None:
            await self._lifespan

    def flush_telemetry(self) -> None:
        self.app.app.state.runtime.telemetry.force_flush()

    async def call(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
        status, _, answer, _ = await asgi_call(
            self.app, "POST", PATH.decode(), headers, body, catch=False
        )
        return status, answer


def _jobs(variant: str, key: str, stream: bool) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    chosen = targets.minimal_variants() if variant == "minimal" else targets.casegate_variants()
    jobs = []
    for v in chosen:
        job = v.job(stream)
        merged = {
            "authorization": f"Bearer {key}",
            "content-type": "application/json",
            "host": "127.0.0.1",
            "x-casegate-use-case": "triage",  # as bench.compare's casegate headers
            "x-casegate-case-id": "CASE-1",
        } | {k.lower(): val for k, val in job["headers"].items()}
        headers = [(k.encode(), val.encode()) for k, val in merged.items()]
        jobs.append((headers, job["body"].encode()))
    return jobs


def _instrument(on: bool) -> None:
    """Switch the instrumentation of the callgrind running this process on or off."""
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


_TURNS = itertools.count()


async def _run(h: Harness, jobs: list[Any], n: int, conc: int, *, measure: bool = True) -> float:
    sem = asyncio.Semaphore(conc)
    failures: list[int] = []

    async def one(i: int) -> None:
        async with sem:
            headers, body = jobs[i % len(jobs)]
            status, out = await h.call(headers, workload.turn(body, next(_TURNS)))
            if status != 200 or (b"lineage_id" not in out and b"[DONE]" not in out):
                failures.append(status)

    if _CALLGRIND and measure:
        _instrument(True)
    t0 = time.process_time()
    if conc == 1:
        for i in range(n):
            await one(i)
    else:
        await asyncio.gather(*(one(i) for i in range(n)))
    h.flush_telemetry()  # the exports of this run's spans are counted in it
    spent = time.process_time() - t0
    if _CALLGRIND and measure:
        _instrument(False)
    if failures:
        raise RuntimeError(f"{len(failures)} calls failed, e.g. status {failures[0]}")
    return spent * 1000 / n


async def main_async(args: argparse.Namespace, workdir: Path, procs: Procs) -> None:
    stub = _start_stub(procs, workdir)
    sink = free_port()
    otlp = args.variant == "all"
    if otlp:
        start_sink(procs, workdir, sink)
    secrets_env = {
        "BENCH_UPSTREAM_KEY": "sk-bench-upstream",
        "BENCH_KEY": "cg-bench-" + "k" * 32,
        "BENCH_OPS": "cg-ops-" + "o" * 32,
    }
    os.environ.update(secrets_env)
    for k in [k for k in os.environ if k.startswith(("CASEGATE_", "OTEL_"))]:
        del os.environ[k]
    if otlp:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink}"
        # Batches of 512 spans (the SDK's batch size; about what bench.compare's 200 ms
        # schedule makes at c=8) whatever the speed: a run ends with a flush.
        os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
    os.environ.update(kv.split("=", 1) for kv in args.env)
    bundle = workdir / "bundle.yaml"
    bundle.write_text(targets.bundle_text())
    cfg = workdir / "casegate.yaml"
    cfg.write_text(json.dumps(targets.casegate_config(stub, bundle, "sqlite:///casegate.db")))
    os.chdir(workdir)
    os.environ["CASEGATE_CONFIG"] = str(cfg)
    from gateway.app import app_from_env
    from gateway.metrics import metrics_directory

    metrics_directory(os.environ)
    h = Harness(app_from_env())
    await h.start()
    try:
        jobs = _jobs(args.variant, secrets_env["BENCH_KEY"], args.stream)
        await _run(h, jobs, max(50, args.requests // 5), 8, measure=False)  # warm-up
        results: dict[int, list[float]] = {c: [] for c in args.concurrency}
        for _ in range(args.reps):
            for c in args.concurrency:
                results[c].append(await _run(h, jobs, args.requests, c))
        for c, values in results.items():
            spread = ", ".join(f"{v:.3f}" for v in values)
            print(
                f"{args.variant:8} stream={args.stream!s:5} c={c}: CPU "
                f"{statistics.median(values):.3f} ms/call (runs: {spread})"
            )
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            await _run(h, jobs, args.requests, 8)
            profiler.stop()
            Path(args.profile).write_text(profiler.output_html())
            print(profiler.output_text(unicode=False, color=False, show_all=False)[:12000])
    finally:
        await h.stop()


def _count_instructions(args: argparse.Namespace) -> int:
    """Re-run this benchmark under callgrind, instrumented only while measuring: one
    run per concurrency level, no warm-up counted. Instructions are what Python executes
    (the interpreter, C extensions, SQLite), the same whatever else the machine does."""
    with tempfile.TemporaryDirectory(prefix="casegate-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [a for a in sys.argv[1:] if a != "--callgrind"]
        for c in args.concurrency:
            cmd = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                PY,
                "-m",
                "bench.gateway.inproc",
                *argv,
                "--reps",
                "1",
                "--concurrency",
                str(c),
            ]
            env = os.environ | {"CASEGATE_INPROC_CALLGRIND": "1", "PYTHONHASHSEED": "0"}
            subprocess.run(
                cmd,
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            total = next(
                int(line.split()[1])
                for line in out.read_text().splitlines()
                if line.startswith("totals:")
            )
            print(
                f"{args.variant:8} stream={args.stream!s:5} c={c}: "
                f"{total / args.requests / 1e6:.3f} M instructions/call"
            )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("all", "no-otlp", "minimal"), default="all")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8]
    )
    parser.add_argument("--profile", metavar="HTML")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable for the gateway (repeatable)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per call under valgrind (repeatable on a noisy machine)",
    )
    args = parser.parse_args()
    if args.callgrind:
        sys.exit(_count_instructions(args))
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="casegate-inproc-") as tmp:
        try:
            import uvloop

            uvloop.run(main_async(args, Path(tmp), procs))
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
