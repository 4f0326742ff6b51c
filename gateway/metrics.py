"""``GET /metrics``: Prometheus text, summed over every worker process of the server.

Usage::

    metrics = Metrics.from_env(os.environ)      # CASEGATE_METRICS_DIR: shared by workers
    metrics.inc(REQUESTS, {"use_case": "triage", "decision": "allowed"})
    metrics.observe(OVERHEAD, {"stream": "false"}, 0.0012)
    text = metrics.render()                     # this worker + every other worker's file

Design: uvicorn ``--workers N`` forks N processes, each with its own counters. Each
worker keeps plain in-memory counters and histograms and, when they changed, writes a
snapshot every ``CASEGATE_METRICS_FLUSH_MS`` (500 ms) to ``worker-<pid>.json`` in a
directory that ``casegate serve`` creates for this server and hands to its workers
(``CASEGATE_METRICS_DIR``); ``/metrics`` sums the files with the answering worker's live
state. Files of workers that died stay (counters never go backwards); a new server
gets a new directory. This costs no dependency and nothing on the request path (a
dict update); prometheus_client's multiprocess mode would do the same with mmap files
but adds a dependency to the hashed lock for no gain here.

Labels are codes and configured names only (use case, decision, refusal code, model,
provider): never message content, raw ids or anything a client can invent (an unknown
use case is labelled ``(unknown)``).
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.settings import ConfigError
from tracing import attributes as attr

if TYPE_CHECKING:
    from gateway.runtime import Runtime

__all__ = [
    "Metrics",
    "live_gauges",
    "metrics_directory",
    "metrics_route",
    "observe_attempt",
    "observe_call",
    "observe_lineage_write",
    "observe_overhead",
    "start_metrics",
]

log = logging.getLogger("casegate.metrics")


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | histogram | gauge
    help: str
    buckets: tuple[float, ...] = ()


OPERATION_DURATION = Family(
    "gen_ai_client_operation_duration_seconds",
    "histogram",
    "GenAI operation duration per provider attempt (gen_ai.client.operation.duration).",
    attr.DURATION_BUCKETS,
)
TOKEN_USAGE = Family(
    "gen_ai_client_token_usage",
    "histogram",
    "Input and output tokens per provider call (gen_ai.client.token.usage).",
    attr.TOKEN_BUCKETS,
)
TIME_TO_FIRST_CHUNK = Family(
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "histogram",
    "Time to the first chunk of a streamed response (gen_ai.client.operation.time_to_first_chunk).",
    attr.DURATION_BUCKETS,
)
OVERHEAD = Family(
    "casegate_gateway_overhead_seconds",
    "histogram",
    "Gateway overhead: request time minus provider time (for streams, up to the first chunk).",
    attr.OVERHEAD_BUCKETS,
)
REQUESTS = Family("casegate_requests_total", "counter", "Chat calls, by use case and decision.")
REFUSALS = Family("casegate_refusals_total", "counter", "Calls the gateway refused, by code.")
POLICY_EXCEPTIONS = Family(
    "casegate_policy_exceptions_total",
    "counter",
    "Blocked or removed tool calls plus ineligible refusals.",
)
TOOL_CALLS_BLOCKED = Family(
    "casegate_tool_calls_blocked_total", "counter", "Tool calls blocked or removed by policy."
)
KILL_SWITCH_REFUSALS = Family(
    "casegate_kill_switch_refusals_total",
    "counter",
    "Calls refused because a kill switch is engaged.",
)
# issue 11 (operations): tripwire firings and lineage writes
TRIPWIRES_FIRED = Family(
    "casegate_tripwire_fired_total",
    "counter",
    "Tripwires that engaged a kill switch, by use case, tripwire, kind and mode.",
)
LINEAGE_WRITE_FAILURES = Family(
    "casegate_lineage_write_failures_total",
    "counter",
    "Lineage event writes that failed (the store did not commit them).",
)
LINEAGE_WRITE = Family(
    "casegate_lineage_write_seconds",
    "histogram",
    "Time to make a batch of lineage events durable in the state store.",
    attr.OVERHEAD_BUCKETS,
)
FAMILIES = {
    f.name: f
    for f in (
        REQUESTS,
        REFUSALS,
        POLICY_EXCEPTIONS,
        TOOL_CALLS_BLOCKED,
        KILL_SWITCH_REFUSALS,
        OVERHEAD,
        OPERATION_DURATION,
        TIME_TO_FIRST_CHUNK,
        TOKEN_USAGE,
        TRIPWIRES_FIRED,
        LINEAGE_WRITE_FAILURES,
        LINEAGE_WRITE,
    )
}
WORKERS = "casegate_metrics_workers"

LabelKey = tuple[tuple[str, str], ...]  # sorted (name, value) pairs; JSON in snapshots


def _key(labels: Mapping[str, str | None]) -> LabelKey:
    # each family is recorded from one call site, so the label order is stable
    return tuple([(k, v) for k, v in labels.items() if v is not None])


class Metrics:
    def __init__(self, directory: Path | None, *, flush_ms: int = 500) -> None:
        self.directory = directory
        self.flush_ms = flush_ms
        self.pid = os.getpid()
        self.counters: dict[str, dict[LabelKey, float]] = {}
        # histogram: label key -> [bucket counts..., sum, count]
        self.histograms: dict[str, dict[LabelKey, list[float]]] = {}
        self._dirty = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Metrics:
        raw = env.get("CASEGATE_METRICS_DIR")
        text = env.get("CASEGATE_METRICS_FLUSH_MS") or "500"
        if not text.isdigit():
            raise ConfigError(
                f"environment: CASEGATE_METRICS_FLUSH_MS must be an integer: {text!r}"
            )
        return cls(Path(raw) if raw else None, flush_ms=max(10, int(text)))

    # -- recording (the request path: dict updates only) ------------------------
    def inc(self, family: Family, labels: Mapping[str, str | None], value: float = 1) -> None:
        series = self.counters.setdefault(family.name, {})
        key = _key(labels)
        series[key] = series.get(key, 0) + value
        self._dirty = True

    def observe(self, family: Family, labels: Mapping[str, str | None], value: float) -> None:
        series = self.histograms.setdefault(family.name, {})
        key = _key(labels)
        cells = series.get(key)
        if cells is None:
            cells = series[key] = [0.0] * (len(family.buckets) + 2)
        i = bisect.bisect_left(family.buckets, value)  # the first bound >= value
        if i < len(family.buckets):
            cells[i] += 1
        cells[-2] += value
        cells[-1] += 1
        self._dirty = True

    # -- sharing between workers -------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain JSON: label keys become JSON lists of pairs."""
        return {
            "pid": self.pid,
            "counters": {
                name: {json.dumps(k): v for k, v in series.items()}
                for name, series in self.counters.items()
            },
            "histograms": {
                name: {json.dumps(k): cells for k, cells in series.items()}
                for name, series in self.histograms.items()
            },
        }

    def flush(self) -> None:
        if self.directory is None or not self._dirty:
            return
        self._dirty = False
        path = self.directory / f"worker-{self.pid}.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, path)
        except OSError as exc:
            self._dirty = True
            log.warning("metrics snapshot not written: %s", exc.strerror)

    def final_flush(self) -> None:
        self._dirty = True
        self.flush()

    async def run(self) -> None:
        """Background task: flush the snapshot whenever it changed."""
        while True:
            self.flush()
            await asyncio.sleep(self.flush_ms / 1000)

    def _snapshots(self) -> list[dict[str, Any]]:
        out = [self.snapshot()]
        if self.directory is None:
            return out
        for path in sorted(self.directory.glob("worker-*.json")):
            if path.name == f"worker-{self.pid}.json":
                continue
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
        return out

    def render(self) -> str:
        snaps = self._snapshots()
        counters: dict[str, dict[str, float]] = {}
        histos: dict[str, dict[str, list[float]]] = {}
        for snap in snaps:
            for name, series in snap.get("counters", {}).items():
                acc = counters.setdefault(name, {})
                for key, value in series.items():
                    acc[key] = acc.get(key, 0) + value
            for name, series in snap.get("histograms", {}).items():
                hacc = histos.setdefault(name, {})
                for key, cells in series.items():
                    cur = hacc.get(key)
                    if cur is None or len(cur) != len(cells):
                        hacc[key] = list(cells)
                    else:
                        hacc[key] = [a + b for a, b in zip(cur, cells, strict=True)]
        lines = [
            f"# HELP {WORKERS} Worker processes whose metrics this answer sums.",
            f"# TYPE {WORKERS} gauge",
            f"{WORKERS} {len(snaps)}",
        ]
        for family in FAMILIES.values():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            if family.kind == "counter":
                for key, value in sorted(counters.get(family.name, {}).items()):
                    lines.append(f"{family.name}{_labels(key)} {_num(value)}")
                continue
            base = family.name
            for key, cells in sorted(histos.get(family.name, {}).items()):
                running = 0.0
                for bound, n in zip(family.buckets, cells, strict=False):
                    running += n
                    lines.append(f"{base}_bucket{_labels(key, le=_num(bound))} {_num(running)}")
                lines.append(f"{base}_bucket{_labels(key, le='+Inf')} {_num(cells[-1])}")
                lines.append(f"{base}_sum{_labels(key)} {_num(cells[-2])}")
                lines.append(f"{base}_count{_labels(key)} {_num(cells[-1])}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(key: str, *, le: str | None = None) -> str:
    pairs = [(k, v) for k, v in json.loads(key)]
    if le is not None:
        pairs.append(("le", le))
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


# -- what the pipeline reports ------------------------------------------------------


def call_labels(use_case: str | None, known: bool) -> str:
    return use_case if (known and use_case) else "(unknown)"


def observe_call(metrics: Metrics, telemetry: Any, rec: Any, *, known_use_case: bool) -> None:
    """Count one finished chat call (``rec`` is a ``gateway.lineage.LineageRecord``)."""
    use_case = call_labels(rec.use_case, known_use_case)
    decision = rec.decision or "refused"
    metrics.inc(REQUESTS, {"use_case": use_case, "decision": decision})
    telemetry.count(
        attr.METRIC_REQUESTS, 1, {"casegate.use_case": use_case, "casegate.decision": decision}
    )
    blocked = len(rec.tool_calls_blocked)
    exceptions = blocked
    if decision == "refused" and rec.refusal:
        metrics.inc(REFUSALS, {"code": rec.refusal, "use_case": use_case})
        telemetry.count(attr.METRIC_REFUSALS, 1, {"casegate.refusal.code": rec.refusal})
        if rec.refusal == "ineligible":
            exceptions += 1
        if rec.refusal == "kill_switch_engaged":
            metrics.inc(KILL_SWITCH_REFUSALS, {"use_case": use_case})
            telemetry.count(attr.METRIC_KILL_SWITCH_REFUSALS, 1, {"casegate.use_case": use_case})
    if blocked:
        metrics.inc(TOOL_CALLS_BLOCKED, {"use_case": use_case}, blocked)
        telemetry.count(attr.METRIC_TOOL_CALLS_BLOCKED, blocked, {"casegate.use_case": use_case})
    if exceptions:
        metrics.inc(POLICY_EXCEPTIONS, {"use_case": use_case}, exceptions)
        telemetry.count(attr.METRIC_POLICY_EXCEPTIONS, exceptions, {"casegate.use_case": use_case})


def observe_overhead(
    metrics: Metrics, telemetry: Any, seconds: float, *, use_case: str, stream: bool
) -> None:
    labels = {"use_case": use_case, "stream": "true" if stream else "false"}
    metrics.observe(OVERHEAD, labels, max(0.0, seconds))
    telemetry.record_overhead(max(0.0, seconds), {"casegate.use_case": use_case})


def observe_attempt(
    metrics: Metrics,
    telemetry: Any,
    *,
    duration_s: float,
    provider: str,
    request_model: str,
    response_model: str | None,
    error_type: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    ttfc_s: float | None,
    server_address: str | None,
    server_port: int | None,
) -> None:
    base = {
        "gen_ai_operation_name": attr.GEN_AI_OPERATION_CHAT,
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": request_model,
        "gen_ai_response_model": response_model,
    }
    metrics.observe(OPERATION_DURATION, {**base, "error_type": error_type}, duration_s)
    if input_tokens is not None:
        metrics.observe(TOKEN_USAGE, {**base, "gen_ai_token_type": "input"}, input_tokens)
    if output_tokens is not None:
        metrics.observe(TOKEN_USAGE, {**base, "gen_ai_token_type": "output"}, output_tokens)
    if ttfc_s is not None:
        metrics.observe(TIME_TO_FIRST_CHUNK, base, ttfc_s)
    telemetry.record_operation(
        duration_s=duration_s,
        provider=provider,
        request_model=request_model,
        response_model=response_model,
        error_type=error_type,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        ttfc_s=ttfc_s,
        server_address=server_address,
        server_port=server_port,
    )


async def _serve(request: Request) -> Response:
    rt = request.app.state.runtime
    metrics: Metrics = rt.metrics
    text = metrics.render() + await live_gauges(rt)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


# -- issue 11: lineage writes, and gauges read from the state store at scrape time ----


def observe_lineage_write(metrics: Metrics, seconds: float, ok: bool) -> None:
    metrics.observe(LINEAGE_WRITE, {"outcome": "ok" if ok else "failed"}, max(0.0, seconds))
    if not ok:
        metrics.inc(LINEAGE_WRITE_FAILURES, {})


def _gauge(name: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        key = json.dumps(list(labels.items()))
        lines.append(f"{name}{_labels(key)} {_num(value)}")
    return lines


async def live_gauges(rt: Runtime) -> str:
    """State-store-wide gauges, the same on every worker and replica (dashboards and
    alerts take ``max``): switch state and who acknowledged it, the draft queue. A store
    that does not answer within a second leaves them out (``casegate_state_up 0``)."""
    import time

    from gateway.switchboard import ACK_LIVE_MS

    try:
        async with asyncio.timeout(1.0):
            control = await rt.store.read_control()
            now = int(time.time() * 1000)
            acks = await rt.store.acknowledgements(now - ACK_LIVE_MS)
            pending, oldest_ms = await rt.store.draft_queue()
    except Exception:
        return "\n".join(_gauge("casegate_state_up", "The state store answered.", [({}, 0)]))
    board = rt.switchboard
    lines = _gauge("casegate_state_up", "The state store answered.", [({}, 1)])
    lines += _gauge(
        "casegate_kill_switches_engaged",
        "Engaged kill switches, by mode.",
        [
            ({"mode": m}, sum(1 for r in control.switches if r.mode == m))
            for m in ("halt", "degrade")
        ],
    )
    lines += _gauge(
        "casegate_kill_switch_engaged",
        "1 for each engaged switch; source is operator or tripwire.",
        [
            (
                {
                    "scope": r.scope,
                    "mode": r.mode,
                    "source": "tripwire" if r.engaged_by.startswith("tripwire:") else "operator",
                },
                1,
            )
            for r in control.switches
        ],
    )
    lines += _gauge(
        "casegate_control_state_version",
        "The switch/policy state version in the store.",
        [({}, control.version)],
    )
    lines += _gauge(
        "casegate_switch_worker_version",
        "The state version this answering worker enforces.",
        [({}, board.version if board is not None and board.version is not None else -1)],
    )
    lines += _gauge(
        "casegate_switch_workers_live",
        "Workers (all replicas) that acknowledged a state version in the last 30 s.",
        [({}, len(acks))],
    )
    lines += _gauge(
        "casegate_switch_workers_behind",
        "Live workers whose acknowledged version is older than the store's.",
        [({}, sum(1 for a in acks if a.version < control.version))],
    )
    lines += _gauge("casegate_drafts_pending", "Drafts awaiting approval.", [({}, pending)])
    age = max(0.0, (now - oldest_ms) / 1000) if oldest_ms is not None else 0.0
    lines += _gauge(
        "casegate_drafts_oldest_pending_age_seconds",
        "Age of the oldest draft awaiting approval (0 when none).",
        [({}, round(age, 3))],
    )
    return "\n".join(lines) + "\n"


def start_metrics(rt: Runtime, env: Mapping[str, str]) -> None:
    """This worker's metrics, flushed for the other workers while it runs and at stop."""
    rt.metrics = Metrics.from_env(env)
    rt.background.append(asyncio.create_task(rt.metrics.run(), name="metrics-flush"))
    rt.closers.append(rt.metrics.final_flush)


def metrics_route() -> Route:
    return Route("/metrics", _serve, methods=["GET"])


def metrics_directory(environ: MutableMapping[str, str]) -> Path:
    """The directory this server's workers share (``casegate serve`` calls this once,
    before uvicorn forks): ``$CASEGATE_METRICS_DIR`` if set, else a fresh temporary one,
    removed when the server exits."""
    given = environ.get("CASEGATE_METRICS_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("worker-*.json"):  # a previous server's counters
            stale.unlink(missing_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="casegate-metrics-"))
    environ["CASEGATE_METRICS_DIR"] = str(path)
    atexit.register(shutil.rmtree, path, True)
    return path
