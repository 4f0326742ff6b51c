"""Orchestrator: start every target, load each in turn, write the tables and the chart.

    python -m bench.compare [--quick] [--setup] [--profile] [--reps N] [--duration S]

Everything binds to 127.0.0.1. Each process started here runs in its own process group
and is stopped in a ``finally`` (SIGTERM, then SIGKILL); PostgreSQL schemas made here
are dropped there too.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare import litellm_proxy, report
from bench.compare.targets import OTLP_SETTLE_S, PATH, Ports, Target, build, pg_schemas
from bench.gateway import procstat
from bench.gateway.run import (
    PY,
    ROOT,
    LoadGen,
    Procs,
    Server,
    base_env,
    free_port,
    percentile,
    sigterm_as_interrupt,
    summarize_collapsed,
    wait_first_200,
)

RESULTS = ROOT / "bench" / "results"
OVERHEAD = "casegate_gateway_overhead_seconds"


@dataclass
class Sample:
    rps: float
    p50: float
    p99: float
    mean: float
    ttfc_p50: float
    ttfc_mean: float
    cpu_ms: float
    client_cpu_ms: float  # the load generator's own, per request
    rss_tree_mb: float
    rss_worker_mb: float
    requests: int
    errors: int
    first_error: str | None
    overhead: dict[str, tuple[float, int]] | None  # stream label -> (sum s, count)


def overhead_snapshot(port: int) -> dict[str, tuple[float, int]]:
    """``casegate_gateway_overhead_seconds`` sum and count per ``stream`` label."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        m = re.match(rf"{OVERHEAD}_(sum|count)\{{(.*)\}} (\S+)$", line)
        if not m:
            continue
        stream = re.search(r'stream="(\w+)"', m.group(2))
        key = stream.group(1) if stream else "?"
        acc = out.setdefault(key, [0.0, 0.0])
        acc[0 if m.group(1) == "sum" else 1] += float(m.group(3))
    return {k: (v[0], int(v[1])) for k, v in out.items()}


def diff_overhead(
    a: dict[str, tuple[float, int]], b: dict[str, tuple[float, int]]
) -> dict[str, tuple[float, int]]:
    return {k: (b[k][0] - a.get(k, (0.0, 0))[0], b[k][1] - a.get(k, (0.0, 0))[1]) for k in b}


def measure(
    load: LoadGen, target: Target, conc: int, stream: bool, duration: float, warmup: float
) -> Sample:
    server = target.server
    assert server is not None
    jobs = target.jobs(stream)
    job: dict[str, Any] = {
        "url": f"http://127.0.0.1:{server.port}{PATH}",
        "headers": target.headers,
        "body": jobs[0]["body"],
        "variants": jobs,
        "stream": stream,
        "concurrency": conc,
    }
    warm = load.run(job | {"duration_s": warmup})
    snap0 = overhead_snapshot(server.port) if target.casegate else None
    cpu0 = procstat.cpu_seconds(server.pid)
    res = load.run(job | {"duration_s": duration})
    if target.otlp:
        time.sleep(OTLP_SETTLE_S)  # let the run's last span batch be exported (and counted)
    cpu1 = procstat.cpu_seconds(server.pid)
    overhead = None
    if snap0 is not None:
        overhead = diff_overhead(snap0, overhead_snapshot(server.port))
    lat = sorted(res["latencies_ms"])
    ttfc = sorted(res.get("ttfc_ms") or [])
    done = len(lat)
    nan = float("nan")
    return Sample(
        rps=done / res["elapsed_s"],
        p50=percentile(lat, 50),
        p99=percentile(lat, 99),
        mean=statistics.fmean(lat) if lat else nan,
        ttfc_p50=percentile(ttfc, 50) if ttfc else nan,
        ttfc_mean=statistics.fmean(ttfc) if ttfc else nan,
        cpu_ms=(cpu1 - cpu0) * 1000 / max(done, 1),
        client_cpu_ms=res.get("client_cpu_s", nan) * 1000 / max(done, 1),
        rss_tree_mb=procstat.rss_bytes(server.pid) / 2**20,
        rss_worker_mb=procstat.rss_max_bytes(server.pid) / 2**20,
        requests=done,
        errors=res["errors"] + warm["errors"],
        first_error=res["first_error"] or warm["first_error"],
        overhead=overhead,
    )


def start(target: Target, procs: Procs, workdir: Path, keep_up: bool) -> None:
    """One cold start: spawn -> first 200 to POST /v1/chat/completions."""
    t0 = time.perf_counter()
    server = target.launch(workdir)
    hdrs = {"Content-Type": "application/json", **target.headers, **target.variants[0].headers}
    target.cold_starts.append(wait_first_200(server, PATH, target.first_body(), hdrs, t0))
    if keep_up:
        target.server = server
    else:
        procs.stop(server.proc)


def start_sink(procs: Procs, workdir: Path, port: int) -> Server:
    args = [PY, "-m", "bench.compare.otlp_sink", "--port", str(port)]
    log = workdir / "otlp-sink.log"
    proc = procs.spawn(args, cwd=ROOT, env=base_env(), log=log)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/stats")
            if conn.getresponse().status == 200:
                return Server("otlp-sink", proc, port, log)
        time.sleep(0.05)
    raise RuntimeError("the OTLP sink did not start")


def sink_stats(port: int) -> dict[str, int]:
    with contextlib.suppress(OSError, ValueError):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/stats")
        stats: dict[str, int] = json.loads(conn.getresponse().read())
        return stats
    return {}


def pg_available() -> bool:
    try:
        import psycopg

        from bench.compare.targets import PG

        with psycopg.connect(PG, connect_timeout=3):
            return True
    except Exception as exc:  # any driver or connection error: skip the row, say why
        print(f"PostgreSQL unavailable ({type(exc).__name__}): no casegate-pg", file=sys.stderr)
        return False


def run_profile(load: LoadGen, target: Target, seconds: float) -> str | None:
    """py-spy (200 Hz, on-CPU) on Casegate while it serves the c=8 non-stream mix."""
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if target.server is None or not Path(pyspy).exists():
        print("py-spy not installed: no profile", file=sys.stderr)
        return None
    out = target.server.log.parent / "profile.txt"
    spy = subprocess.Popen(
        [pyspy, "record", "-p", str(target.server.pid), "-r", "200", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)
        jobs = target.jobs(False)
        load.run(
            {
                "url": f"http://127.0.0.1:{target.server.port}{PATH}",
                "headers": target.headers,
                "body": jobs[0]["body"],
                "variants": jobs,
                "stream": False,
                "concurrency": 8,
                "duration_s": seconds,
            }
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spy.pid, signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(spy.pid, signal.SIGKILL)
            _, err = spy.communicate()
    if not out.exists():
        print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        return None
    return summarize_collapsed(drop_idle(out.read_text()))


#: Leaf frames of background threads that py-spy reports as active while they wait (the
#: OTel span processor and metric reader sleep in ``Condition.wait`` between exports).
IDLE_LEAF = re.compile(r"(Condition|Event)\.wait \(threading\.py:\d+\)$")


def drop_idle(text: str) -> str:
    """py-spy's collapsed stacks without the samples of threads waiting on a condition."""
    kept, dropped = [], 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if IDLE_LEAF.search(stack) and count.isdigit():
            dropped += int(count)
            continue
        kept.append(line)
    print(f"profile: {dropped} samples of waiting threads left out", file=sys.stderr)
    return "\n".join(kept)


@contextlib.contextmanager
def checkout(ref: str, path: Path) -> Iterator[Path]:
    """A detached git worktree of `ref` at `path` (the baseline's code), removed after."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    sha = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"casegate-base: {ref} ({sha}) from {path}", file=sys.stderr)
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 repetition of 1 s runs (~2 min)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    p.add_argument("--duration", type=float, default=None, help="s per measured run (2; quick 1)")
    p.add_argument("--warmup", type=float, default=None, help="s of warm-up per run (0.5; 0.3)")
    p.add_argument("--cold-starts", type=int, default=None, help="per target (3; quick 1)")
    p.add_argument("--concurrency", default="1,8,64", help="comma-separated (default 1,8,64)")
    p.add_argument("--only", default="", help="comma-separated target names (direct is kept)")
    p.add_argument("--setup", action="store_true", help="create bench/.venv-litellm if missing")
    p.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM proxy out")
    p.add_argument("--no-pg", action="store_true", help="leave casegate-pg out")
    p.add_argument("--profile", action="store_true", help="py-spy Casegate at c=8; print the top")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, state)")
    p.add_argument(
        "--baseline",
        metavar="REF",
        help="also run the casegate target at git REF as casegate-base (a before/after "
        "measured in the same run)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    args.reps = max(1, args.reps or (1 if quick else 3))
    args.duration = args.duration or (1.0 if quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if quick else 0.5)
    args.cold_starts = max(1, args.cold_starts or (1 if quick else 3))
    args.concs = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def litellm_ready(args: argparse.Namespace) -> str | None:
    """The installed litellm version (installing it with ``--setup``), or None."""
    if args.no_litellm:
        return None
    version = litellm_proxy.installed_version()
    if version is None and args.setup:
        RESULTS.mkdir(parents=True, exist_ok=True)
        version = litellm_proxy.setup(RESULTS / "litellm-setup.log")
    if version is None:
        print(
            f"no LiteLLM proxy in {litellm_proxy.VENV}: run with --setup to create it",
            file=sys.stderr,
        )
    return version


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    ll_version = litellm_ready(args)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="casegate-compare-"))
    try:
        with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            new_schema: Callable[[], str] | None = None
            if not args.no_pg and pg_available():
                new_schema = stack.enter_context(pg_schemas())
            stack.callback(procs.stop_all)  # servers stop before their schemas are dropped
            ports = Ports(stub=free_port(), sink=free_port())
            baseline = None
            if args.baseline:
                baseline = stack.enter_context(checkout(args.baseline, tmp / "baseline"))
            targets = build(
                tmp, procs, ports, new_schema, litellm=ll_version is not None, baseline=baseline
            )
            if args.only:
                keep = {"direct", *args.only.split(",")}
                targets = [t for t in targets if t.name in keep]
            start_sink(procs, tmp, ports.sink)
            for target in targets:
                for i in range(args.cold_starts):
                    start(target, procs, tmp, keep_up=i == args.cold_starts - 1)
                print(
                    f"{target.name}: cold starts {[round(c, 2) for c in target.cold_starts]} s",
                    file=sys.stderr,
                )
            load = LoadGen(procs, tmp)
            rows = [(t, c, s) for t in targets for s in (False, True) for c in args.concs]
            results: dict[tuple[str, int, bool], list[Sample]] = {
                (t.name, c, s): [] for t, c, s in rows
            }
            # Repetitions interleave across rows, so drift hits every row alike.
            for rep in range(args.reps):
                for target, conc, stream in rows:
                    sample = measure(load, target, conc, stream, args.duration, args.warmup)
                    results[(target.name, conc, stream)].append(sample)
                    print(
                        f"rep {rep + 1}/{args.reps} {target.name:16} c={conc:<2} "
                        f"stream={stream!s:5} {sample.rps:7.0f} req/s p50 {sample.p50:7.2f} ms "
                        f"cpu {sample.cpu_ms:6.3f} ms/req (load generator "
                        f"{sample.client_cpu_ms:5.3f}) errors {sample.errors}"
                        + (f" first error: {sample.first_error}" if sample.first_error else ""),
                        file=sys.stderr,
                    )
            casegate = next((t for t in targets if t.name == "casegate"), None)
            profile = None
            if args.profile and casegate is not None:
                profile = run_profile(load, casegate, args.profile_seconds)
            sink = sink_stats(ports.sink)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            RESULTS.mkdir(parents=True, exist_ok=True)
            chart = report.chart(results, RESULTS / f"compare-{stamp}.png")
            md = report.render(
                args=args,
                targets=targets,
                results=results,
                litellm_version=ll_version,
                sink=sink,
                profile=profile,
                chart=chart,
                elapsed_s=time.perf_counter() - t_start,
            )
            print(md)
            out = RESULTS / f"compare-{stamp}.md"
            out.write_text(md + "\n")
            (RESULTS / f"compare-{stamp}.json").write_text(report.dump(results, targets))
            print(f"\nwritten to {out.relative_to(ROOT)}", file=sys.stderr)
            errors = sum(s.errors for samples in results.values() for s in samples)
            return 1 if errors else 0
    except KeyboardInterrupt:
        print("interrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
