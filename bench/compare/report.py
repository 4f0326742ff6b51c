"""The Markdown report, the targets table, the metric check and the PNG chart.

Medians over repetitions throughout; ratios are between rows of the same concurrency
and stream mode, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.gateway import workload
from bench.gateway.run import git_commit

if TYPE_CHECKING:
    from bench.compare.run import Sample
    from bench.compare.targets import Target

Results = dict[tuple[str, int, bool], list["Sample"]]
NAN = float("nan")
CG, PT, LL, DIRECT = "casegate", "pass-through", "litellm-proxy", "direct"


def med(results: Results, name: str, conc: int, stream: bool, attr: str) -> float:
    vals = [getattr(s, attr) for s in results.get((name, conc, stream), [])]
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else NAN


def fmt(x: float, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}{suffix}"


def _ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else NAN


def _names(results: Results) -> list[str]:
    return list(dict.fromkeys(name for name, _, _ in results))


def _concs(results: Results) -> list[int]:
    return sorted({c for _, c, _ in results})


def main_table(results: Results, stream: bool) -> str:
    def m(name: str, conc: int, attr: str) -> float:
        return med(results, name, conc, stream, attr)

    if stream:
        head = (
            "| target | conc | req/s | p50 ms | p99 ms | TTFC p50 ms | added TTFC p50 vs direct ms "
            "| CPU ms per 5-chunk stream | CPU vs pass-through | CPU vs LiteLLM "
            "| req/s vs pass-through | req/s vs LiteLLM | errors |"
        )
    else:
        head = (
            "| target | conc | req/s | p50 ms | p99 ms | added p50 vs direct ms | CPU ms/req "
            "| CPU vs pass-through | CPU vs LiteLLM | req/s vs pass-through | req/s vs LiteLLM "
            "| errors |"
        )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for conc in _concs(results):
        for name in _names(results):
            if (name, conc, stream) not in results:
                continue
            cells = [name, str(conc), fmt(m(name, conc, "rps"), 0)]
            cells += [fmt(m(name, conc, "p50"), 2), fmt(m(name, conc, "p99"), 2)]
            if stream:
                cells.append(fmt(m(name, conc, "ttfc_p50"), 2))
                cells.append(fmt(m(name, conc, "ttfc_p50") - m(DIRECT, conc, "ttfc_p50"), 2))
            else:
                cells.append(fmt(m(name, conc, "p50") - m(DIRECT, conc, "p50"), 2))
            cpu = m(name, conc, "cpu_ms")
            cells.append(fmt(cpu, 3))
            cells.append(fmt(_ratio(cpu, m(PT, conc, "cpu_ms")), 2, "x"))
            cells.append(fmt(_ratio(cpu, m(LL, conc, "cpu_ms")), 3, "x"))
            cells.append(fmt(_ratio(m(name, conc, "rps"), m(PT, conc, "rps")), 2, "x"))
            cells.append(fmt(_ratio(m(name, conc, "rps"), m(LL, conc, "rps")), 2, "x"))
            cells.append(str(sum(s.errors for s in results[(name, conc, stream)])))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _peak(results: Results, name: str, attr: str) -> float:
    vals = [getattr(s, attr) for (n, _, _), ss in results.items() if n == name for s in ss]
    return max(vals) if vals else NAN


def process_table(results: Results, targets: Sequence[Target]) -> str:
    lines = [
        "| target | workers | RSS per worker MB (peak) | RSS process tree MB (peak) "
        "| cold start s (median) | cold starts s |",
        "|---|---|---|---|---|---|",
    ]
    for t in targets:
        cold = statistics.median(t.cold_starts) if t.cold_starts else NAN
        lines.append(
            f"| {t.name} | {t.workers} | {fmt(_peak(results, t.name, 'rss_worker_mb'), 0)} "
            f"| {fmt(_peak(results, t.name, 'rss_tree_mb'), 0)} | {fmt(cold, 2)} "
            f"| {', '.join(f'{c:.2f}' for c in t.cold_starts)} |"
        )
    return "\n".join(lines)


def metric_mean_ms(results: Results, name: str, conc: int, stream: bool) -> float:
    total, count = 0.0, 0
    for s in results.get((name, conc, stream), []):
        if s.overhead:
            got = s.overhead.get("true" if stream else "false", (0.0, 0))
            total, count = total + got[0], count + got[1]
    return total * 1000 / count if count else NAN


def metric_table(results: Results) -> str:
    """``casegate_gateway_overhead_seconds`` (mean over the measured requests) against
    the benchmark's added latency (client side, medians over repetitions of the mean)."""
    lines = [
        "| target | conc | stream | metric mean ms | bench added mean vs direct ms "
        "| bench added mean vs pass-through ms | bench added p50 vs direct ms "
        "| metric ÷ bench added vs direct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in _names(results):
        if not name.startswith(CG):
            continue
        for stream in (False, True):
            for conc in _concs(results):
                if (name, conc, stream) not in results:
                    continue
                a_mean, a_p50 = ("ttfc_mean", "ttfc_p50") if stream else ("mean", "p50")
                metric = metric_mean_ms(results, name, conc, stream)
                mine = med(results, name, conc, stream, a_mean)
                vs_direct = mine - med(results, DIRECT, conc, stream, a_mean)
                vs_pt = mine - med(results, PT, conc, stream, a_mean)
                p50 = med(results, name, conc, stream, a_p50)
                p50_direct = p50 - med(results, DIRECT, conc, stream, a_p50)
                lines.append(
                    f"| {name} | {conc} | {'yes (to first chunk)' if stream else 'no'} "
                    f"| {fmt(metric, 3)} | {fmt(vs_direct, 3)} | {fmt(vs_pt, 3)} "
                    f"| {fmt(p50_direct, 3)} | {fmt(_ratio(metric, vs_direct), 2, 'x')} |"
                )
    return "\n".join(lines)


def targets_table(results: Results, targets: Sequence[Target]) -> str:
    def m(name: str, conc: int, stream: bool, attr: str) -> float:
        return med(results, name, conc, stream, attr)

    cold = {t.name: statistics.median(t.cold_starts) for t in targets if t.cold_starts}
    cpu8 = m(CG, 8, False, "cpu_ms")
    rows: list[tuple[str, str, float, bool | None]] = []

    def row(label: str, target: str, value: float, ok: bool | None, digits: int = 3) -> None:
        rows.append((label, target, value, ok if value == value else None))
        fmts.append(digits)

    fmts: list[int] = []
    row("CPU per non-stream request, c=8", "<= 1.0 ms", cpu8, cpu8 <= 1.0)
    r = _ratio(cpu8, m(PT, 8, False, "cpu_ms"))
    row("CPU per request vs pass-through, c=8", "<= 7x", r, r <= 7, 2)
    r = _ratio(m(LL, 8, False, "cpu_ms"), cpu8)
    row("LiteLLM proxy CPU per request ÷ Casegate's, c=8", ">= 7x", r, r >= 7, 2)
    added = m(CG, 1, False, "p50") - m(DIRECT, 1, False, "p50")
    row("added p50 vs direct, c=1", "<= 1.0 ms", added, added <= 1.0)
    r = _ratio(m(CG, 8, False, "rps"), m(LL, 8, False, "rps"))
    row("throughput vs LiteLLM proxy, c=8", ">= 7x", r, r >= 7, 2)
    for conc in (8, 64):
        r = _ratio(m("casegate-2w", conc, False, "rps"), m(CG, conc, False, "rps"))
        row(f"2 workers vs 1 worker throughput, c={conc}", ">= 1.6x", r, r >= 1.6, 2)
    s_cpu = m(CG, 8, True, "cpu_ms")
    row("CPU per 5-chunk stream, c=8", "<= 2.0 ms", s_cpu, s_cpu <= 2.0)
    ttfc = m(CG, 1, True, "ttfc_p50") - m(DIRECT, 1, True, "ttfc_p50")
    row("added time to first chunk p50 vs direct, c=1", "<= 1.0 ms", ttfc, ttfc <= 1.0)
    rss = _peak(results, CG, "rss_worker_mb")
    row("RSS per worker (OpenAI-wire routes only)", "<= 150 MB", rss, rss <= 150, 0)
    c = cold.get(CG, NAN)
    row("cold start to first answered request", "<= 1.5 s", c, c <= 1.5, 2)
    r = _ratio(m("casegate-pg", 8, False, "cpu_ms"), cpu8)
    row("PostgreSQL CPU per request ÷ SQLite's, c=8", "<= 1.5x", r, r <= 1.5, 2)
    lines = ["| target | wanted | measured | met? |", "|---|---|---|---|"]
    for (label, want, value, ok), digits in zip(rows, fmts, strict=True):
        met = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {label} | {want} | {fmt(value, digits)} | {met} |")
    return "\n".join(lines)


def chart(results: Results, path: Path) -> Path | None:
    """A 2x2 PNG: CPU per request and per stream, throughput by concurrency, added p50."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = _names(results)
    concs = _concs(results)
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    c_mid = 8 if 8 in concs else concs[0]

    def bars(ax: Any, values: list[float], title: str, ylabel: str, log: bool = False) -> None:
        ax.bar(range(len(names)), values, color="#4477aa")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        for i, v in enumerate(values):
            if v == v:
                ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=7)

    bars(
        axes[0][0],
        [med(results, n, c_mid, False, "cpu_ms") for n in names],
        f"CPU ms per request (server tree), non-stream, c={c_mid}",
        "ms (log)",
        log=True,
    )
    bars(
        axes[0][1],
        [med(results, n, c_mid, True, "cpu_ms") for n in names],
        f"CPU ms per 5-chunk stream, c={c_mid}",
        "ms (log)",
        log=True,
    )
    ax = axes[1][0]
    width = 0.8 / max(1, len(concs))
    for i, conc in enumerate(concs):
        xs = [j + (i - (len(concs) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [med(results, n, conc, False, "rps") for n in names], width, label=f"c={conc}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_title("req/s, non-stream", fontsize=10)
    ax.legend(fontsize=8)
    bars(
        axes[1][1],
        [
            med(results, n, concs[0], False, "p50") - med(results, DIRECT, concs[0], False, "p50")
            for n in names
        ],
        f"added p50 vs direct, non-stream, c={concs[0]}",
        "ms",
    )
    fig.suptitle(f"Casegate vs pass-through vs LiteLLM proxy ({time.strftime('%Y-%m-%d')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(
    *,
    args: argparse.Namespace,
    targets: Sequence[Target],
    results: Results,
    litellm_version: str | None,
    sink: dict[str, int],
    profile: str | None,
    chart: Path | None,
    elapsed_s: float,
) -> str:
    body_len = len(json.dumps({"messages": workload.MESSAGES}).encode())
    parts = [
        f"# Casegate compared {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"commit {git_commit()} · Python {platform.python_version()} · {os.cpu_count()} CPUs "
        f"· load average at end {os.getloadavg()[0]:.2f} · mode "
        f"{'quick' if args.quick else 'default'} · {args.reps} repetitions of "
        f"{args.duration:g} s per row (warm-up {args.warmup:g} s), medians · messages "
        f"{body_len} B, 1 request in 4 offers 3 tools · LiteLLM "
        f"{litellm_version or 'not measured'} · OTLP sink received {sink or 'nothing'} · "
        f"run took {elapsed_s:.0f} s"
        + (
            f" · casegate-base: the casegate target at {args.baseline}"
            if getattr(args, "baseline", None)
            else ""
        ),
        "",
        "## Non-streaming",
        "",
        main_table(results, False),
        "",
        "## Streaming (5 chunks: 4 text deltas + the finish chunk)",
        "",
        main_table(results, True),
        "",
        "## Processes",
        "",
        process_table(results, targets),
        "",
        "## Gateway-overhead metric against the benchmark",
        "",
        metric_table(results),
        "",
        "The metric (`casegate_gateway_overhead_seconds` from `GET /metrics`, the delta "
        "over each measured run) is the request's time inside the pipeline minus the "
        "provider's; the benchmark's added latency also holds the extra loopback hop and "
        "the HTTP server's parsing, which the pass-through's own added latency measures.",
        "",
        "## Targets (issue 10)",
        "",
        targets_table(results, targets),
        "",
        "CPU ms/req: utime+stime of the server's process tree over a measured run ÷ "
        "requests answered (10 ms ticks). Targets with OTLP on export spans every 200 ms "
        "and have their CPU read 0.3 s after the run, so their exports are counted. "
        "Ratios are between rows of the same concurrency and stream mode; added latency is "
        "against `direct` at the same concurrency. All servers stay up during the whole "
        "run (2 shared cores: the stub, the server under test and the load generator "
        "compete), so compare ratios rather than absolute req/s.",
    ]
    if chart is not None:
        parts += ["", f"Chart: `{chart.name}` (beside this file)."]
    if profile:
        parts += [
            "",
            "## py-spy profile, casegate at c=8 (non-stream mix)",
            "",
            "py-spy's active samples (a thread in a blocking call the kernel does not show "
            "as sleeping counts, e.g. the SQLite commit on the event loop); the samples of "
            "the OTel threads waiting between exports are left out.",
            "",
            "```",
        ]
        parts += [profile, "```"]
    return "\n".join(parts)


def dump(results: Results, targets: Sequence[Target]) -> str:
    return json.dumps(
        {
            "rows": [
                {"target": n, "concurrency": c, "stream": s, "samples": [asdict(x) for x in xs]}
                for (n, c, s), xs in results.items()
            ],
            "cold_starts": {t.name: t.cold_starts for t in targets},
        },
        indent=1,
    )
