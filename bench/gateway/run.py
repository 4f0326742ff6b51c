"""Orchestrator: start the stub, the pass-through and Casegate, load each, print a table.

    python -m bench.gateway [--quick] [--reps 3] [--profile]

Everything binds to 127.0.0.1. Every process started here runs in its own process group
and is stopped in a ``finally`` (SIGTERM, then SIGKILL), Ctrl-C and errors included.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway import procstat, workload

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
READY_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 900.0
SOURCE_DIRS = ("gateway", "policies", "redaction", "tracing", "tests/kit", "bench/gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


@dataclass
class Procs:
    """Every child process this run started; ``stop_all`` ends them, newest first."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path, **kw: Any):
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=kw.pop("stdout", out),
                stderr=out,
                start_new_session=True,  # its own process group: killpg reaches its children
                **kw,
            )
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.started)):
            self.stop(proc)


def wait_first_200(
    server: Server, path: str, body: bytes, headers: dict[str, str], t0: float
) -> float:
    """Seconds from ``t0`` (the spawn) to the first 200 answer to ``POST path``."""
    deadline = t0 + READY_TIMEOUT_S
    last = "no answer"
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n{server.tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 200:
                return time.perf_counter() - t0
            last = f"HTTP {resp.status}: {data[:300]!r}"
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        time.sleep(0.01)
    raise RuntimeError(f"{server.name}: no 200 within {READY_TIMEOUT_S}s ({last})\n{server.tail()}")


@dataclass
class Target:
    name: str
    path: str
    headers: dict[str, str]
    casegate: bool
    launch: Any  # (Procs, workdir) -> Server
    server: Server | None = None
    cold_starts: list[float] = field(default_factory=list)

    def expect(self, stream: bool) -> str:
        return '"lineage_id"' if self.casegate and not stream else ""

    def body(self, stream: bool) -> bytes:
        return workload.body(casegate=self.casegate, stream=stream)

    def start(self, procs: Procs, workdir: Path) -> Server:
        t0 = time.perf_counter()
        server = self.launch(procs, workdir)
        hdrs = {"Content-Type": "application/json", **self.headers}
        self.cold_starts.append(wait_first_200(server, self.path, self.body(False), hdrs, t0))
        return server


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASEGATE_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def casegate_config(stub_port: int) -> str:
    # JSON is YAML: no PyYAML needed here.
    return json.dumps(
        {
            "state": "sqlite:///casegate.db",
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
                {"name": "bench", "key_env": "BENCH_KEY", "use_cases": ["triage", "reply_drafting"]}
            ],
            "operators": [{"name": "ops", "token_env": "BENCH_OPS", "roles": ["admin"]}],
        },
        indent=2,
    )


def make_targets(tmp: Path, procs: Procs, stub_port_ref: list[int]) -> list[Target]:
    secrets_env = {
        "BENCH_UPSTREAM_KEY": "sk-bench-" + secrets.token_urlsafe(16),
        "BENCH_KEY": "cg-bench-" + secrets.token_urlsafe(24),
        "BENCH_OPS": "cg-ops-" + secrets.token_urlsafe(24),
    }
    upstream_auth = {"Authorization": f"Bearer {secrets_env['BENCH_UPSTREAM_KEY']}"}

    def launch_stub(procs: Procs, workdir: Path) -> Server:
        port = stub_port_ref[0] or free_port()
        args = [PY, "-m", "tests.kit.stub", "--port", str(port)]
        log = workdir / "stub.log"
        proc = procs.spawn(args, cwd=ROOT, env=base_env(), log=log)
        return Server("stub", proc, port, log)

    def launch_passthrough(procs: Procs, workdir: Path) -> Server:
        port = free_port()
        upstream = f"http://127.0.0.1:{stub_port_ref[0]}/v1"
        args = [PY, "-m", "bench.gateway.passthrough", "--port", str(port), "--upstream", upstream]
        log = workdir / "passthrough.log"
        proc = procs.spawn(args, cwd=ROOT, env=base_env(), log=log)
        return Server("pass-through", proc, port, log)

    def launch_casegate(procs: Procs, workdir: Path) -> Server:
        # A fresh state directory per start: a cold start includes migrations and keys.
        state = Path(tempfile.mkdtemp(prefix="casegate-", dir=workdir))
        cfg = state / "casegate.yaml"
        cfg.write_text(casegate_config(stub_port_ref[0]))
        port = free_port()
        args = [PY, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(port)]
        env = base_env() | secrets_env
        log = state / "gateway.log"
        proc = procs.spawn(args, cwd=state, env=env, log=log)
        return Server("casegate", proc, port, log)

    path = "/v1/chat/completions"
    casegate_headers = {
        "Authorization": f"Bearer {secrets_env['BENCH_KEY']}",
        "X-Casegate-Use-Case": "triage",
        "X-Casegate-Case-Id": "CASE-1",
    }
    return [
        Target("direct", path, upstream_auth, False, launch_stub),
        Target("pass-through", path, upstream_auth, False, launch_passthrough),
        Target("casegate", path, casegate_headers, True, launch_casegate),
    ]


# --------------------------------------------------------------------------- load


class LoadGen:
    def __init__(self, procs: Procs, workdir: Path) -> None:
        self.procs = procs
        self.proc = procs.spawn(
            [PY, "-m", "bench.gateway.load"],
            cwd=ROOT,
            env=base_env(),
            log=workdir / "load.log",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], JOB_TIMEOUT_S)
        if not ready:
            raise RuntimeError(f"load generator: no answer within {JOB_TIMEOUT_S}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited ({self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class Sample:
    rps: float
    p50: float
    p99: float
    cpu_ms: float
    rss_mb: float
    errors: int
    first_error: str | None


def measure(load: LoadGen, target: Target, conc: int, stream: bool, n: int, warmup: int) -> Sample:
    assert target.server is not None
    job = {
        "url": f"http://127.0.0.1:{target.server.port}{target.path}",
        "headers": target.headers,
        "body": target.body(stream).decode(),
        "stream": stream,
        "concurrency": conc,
        # Casegate's answer carries its `casegate` object: proof the governed path ran.
        "expect": target.expect(stream),
    }
    warm = load.run(job | {"requests": warmup})
    pid = target.server.pid
    cpu0 = procstat.cpu_seconds(pid)
    res = load.run(job | {"requests": n})
    cpu1 = procstat.cpu_seconds(pid)
    lat = sorted(res["latencies_ms"])
    done = len(lat)
    return Sample(
        rps=done / res["elapsed_s"],
        p50=percentile(lat, 50),
        p99=percentile(lat, 99),
        cpu_ms=(cpu1 - cpu0) * 1000 / max(done, 1),
        rss_mb=procstat.rss_bytes(pid) / 2**20,
        errors=res["errors"] + warm["errors"],
        first_error=res["first_error"] or warm["first_error"],
    )


# --------------------------------------------------------------------------- report


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"  # NaN check


def table(results: dict[tuple[str, int, bool], list[Sample]], cold: dict[str, float]) -> str:
    def med(key: tuple[str, int, bool], attr: str) -> float:
        vals = [getattr(s, attr) for s in results.get(key, [])]
        return statistics.median(vals) if vals else float("nan")

    head = (
        "| target | conc | stream | req/s | p50 ms | p99 ms | added p50 vs direct ms "
        "| CPU ms/req | CPU/req vs pass-through | rps vs pass-through | RSS MB "
        "| cold start s | errors |"
    )
    lines = [head, "|" + "---|" * 13]
    for key in results:
        name, conc, stream = key
        pt = ("pass-through", conc, stream)
        direct = ("direct", conc, stream)
        errors = sum(s.errors for s in results[key])
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    str(conc),
                    "yes" if stream else "no",
                    fmt(med(key, "rps"), 0),
                    fmt(med(key, "p50"), 3),
                    fmt(med(key, "p99"), 3),
                    fmt(med(key, "p50") - med(direct, "p50"), 3),
                    fmt(med(key, "cpu_ms"), 3),
                    fmt(med(key, "cpu_ms") / med(pt, "cpu_ms"), 2) + "x",
                    fmt(med(key, "rps") / med(pt, "rps"), 2) + "x",
                    fmt(med(key, "rss_mb"), 0),
                    fmt(cold.get(name, float("nan")), 2),
                    str(errors),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def git_commit() -> str:
    """The short commit, and which source packages have uncommitted changes (measured too)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *SOURCE_DIRS],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    dirs = sorted({d + "/" for line in dirty for d in SOURCE_DIRS if line[3:].startswith(d)})
    return (head or "unknown") + (f" + uncommitted changes in {', '.join(dirs)}" if dirs else "")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10x fewer requests (a smoke run)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per row (median reported)")
    p.add_argument("--requests-c1", type=int, default=500)
    p.add_argument("--requests-c8", type=int, default=2000)
    p.add_argument("--cold-starts", type=int, default=3, help="cold starts per target (median)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile Casegate under c=8 load with py-spy (if installed) and print the top",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, state)")
    return p.parse_args(argv)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scale = 10 if args.quick else 1
    n_by_conc = {1: max(10, args.requests_c1 // scale), 8: max(40, args.requests_c8 // scale)}
    warm_by_conc = {c: max(10, n // 10) for c, n in n_by_conc.items()}
    reps = max(1, args.reps)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="casegate-bench-"))
    stub_port = [0]
    try:
        with sigterm_as_interrupt():
            targets = make_targets(tmp, procs, stub_port)
            casegate = targets[2]
            cold: dict[str, float] = {}
            stub_port[0] = free_port()
            # Cold starts: spawn -> first 200 on /v1/chat/completions; the last one stays up.
            for target in targets:
                for i in range(max(1, args.cold_starts)):
                    server = target.start(procs, tmp)
                    if i < args.cold_starts - 1:
                        procs.stop(server.proc)
                    else:
                        target.server = server
                cold[target.name] = statistics.median(target.cold_starts)
                print(
                    f"{target.name}: cold starts {[round(c, 2) for c in target.cold_starts]} s",
                    file=sys.stderr,
                )
            load = LoadGen(procs, tmp)
            rows = [(t, c, False) for t in targets for c in (1, 8)]
            rows += [(t, c, True) for t in targets for c in (1, 8)]
            results: dict[tuple[str, int, bool], list[Sample]] = {
                (t.name, c, s): [] for t, c, s in rows
            }
            # Repetitions are interleaved across rows so slow drift hits every row alike.
            for rep in range(reps):
                for target, conc, stream in rows:
                    sample = measure(
                        load, target, conc, stream, n_by_conc[conc], warm_by_conc[conc]
                    )
                    results[(target.name, conc, stream)].append(sample)
                    print(
                        f"rep {rep + 1}/{reps} {target.name:12} c={conc} stream={stream!s:5} "
                        f"{sample.rps:8.0f} req/s p50 {sample.p50:7.3f} ms "
                        f"cpu {sample.cpu_ms:6.3f} ms/req errors {sample.errors}"
                        + (f" first error: {sample.first_error}" if sample.first_error else ""),
                        file=sys.stderr,
                    )
            profile = run_profile(load, casegate, n_by_conc[8] * 2) if args.profile else None
            md = report(args, n_by_conc, warm_by_conc, reps, table(results, cold), profile)
            print(md)
            RESULTS.mkdir(parents=True, exist_ok=True)
            out = RESULTS / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}.md"
            out.write_text(md + "\n")
            print(f"\nwritten to {out.relative_to(ROOT)}", file=sys.stderr)
            total_errors = sum(s.errors for samples in results.values() for s in samples)
            return 1 if total_errors else 0
    except KeyboardInterrupt:
        print("interrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_profile(load: LoadGen, casegate: Target, n: int) -> str | None:
    """Sample Casegate with py-spy while it serves ``n`` requests at c=8; the top lines."""
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if casegate.server is None or not Path(pyspy).exists():
        print("py-spy not installed: no profile", file=sys.stderr)
        return None
    out = casegate.server.log.parent / "profile.txt"
    spy = subprocess.Popen(
        [pyspy, "record", "-p", str(casegate.server.pid), "-r", "200", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)
        load.run(
            {
                "url": f"http://127.0.0.1:{casegate.server.port}{casegate.path}",
                "headers": casegate.headers,
                "body": casegate.body(False).decode(),
                "stream": False,
                "concurrency": 8,
                "requests": n,
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
    return summarize_collapsed(out.read_text())


PROJECT_FRAME = re.compile(r"\((?:gateway|policies|redaction|tracing)/")


def summarize_collapsed(text: str, top: int = 15) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks.

    Frames are merged per function (the line number dropped); the inclusive list keeps
    the project's own packages only, the self list everything.
    """
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            if PROJECT_FRAME.search(frame):
                incl_counts[frame] = incl_counts.get(frame, 0) + count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples (on-CPU, 200 Hz)", "", "self %  | function (file)"]
    for frame, c in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * c / total:6.1f}  | {frame}")
    lines += ["", "inclusive % | Casegate function (file)"]
    for frame, c in sorted(incl_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * c / total:6.1f}  | {frame}")
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    n_by_conc: dict[int, int],
    warm_by_conc: dict[int, int],
    reps: int,
    tbl: str,
    profile: str | None,
) -> str:
    load1 = os.getloadavg()[0]
    parts = [
        f"# Gateway benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"commit {git_commit()} · Python {platform.python_version()} · {os.cpu_count()} CPUs "
        f"· load average at end {load1:.2f} · mode {'quick' if args.quick else 'default'} · "
        f"requests per run c=1: {n_by_conc[1]}, c=8: {n_by_conc[8]} (warm-up "
        f"{warm_by_conc[1]}/{warm_by_conc[8]}) · {reps} repetitions, medians · "
        f"body {len(workload.body(casegate=True, stream=False))} B",
        "",
        tbl,
        "",
        "CPU ms/req and RSS are the server process tree's (for `direct`, the stub's); "
        "ratios are to the pass-through row of the same concurrency and stream mode; "
        "added p50 is against `direct` at the same concurrency and stream mode. "
        "Cold start: spawn to first 200 on POST /v1/chat/completions, median; Casegate's "
        "with fresh state (migrations, keys).",
    ]
    if profile:
        parts += ["", "## py-spy profile, Casegate at c=8", "", "```", profile, "```"]
    return "\n".join(parts)
