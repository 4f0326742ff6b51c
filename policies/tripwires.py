"""Tripwires: bundle-defined thresholds that engage a kill switch by themselves.

    tw = loaded.policy.use_cases["triage"].tripwires[0]
    tw.series                      # ("tool_calls", "tool_calls_blocked"): what to count
    trip = evaluate_tripwire(tw, {"tool_calls": 40, "tool_calls_blocked": 3})
    trip.figures, trip.summary     # integers only (lineage), and a sentence for the reason

A bundle lists them per use case::

    tripwires:
      - {name: triage-tool-blocks, kind: tool_calls_blocked_rate, above: 0.05,
         window: 5m, min_count: 20, mode: degrade}
      - {name: triage-pii-spike, kind: redaction_rate_spike, factor: 3, baseline: 1h,
         window: 5m, min_count: 20, mode: halt}
      - {name: triage-upstream, kind: upstream_error_rate, above: 0.2, window: 5m,
         mode: degrade, scope: route:support-default}
      - {name: triage-consent, kind: consent_failures, above: 10, window: 1m, mode: halt}

Kinds (counts are over the use case's calls in the window):

=========================  ===============================================  ==========
kind                       trips when                                       needs
=========================  ===============================================  ==========
tool_calls_blocked_rate    blocked / judged tool calls > ``above``          above
redaction_rate_spike       redactions per call > ``factor`` x the same      factor
                           rate over the ``baseline`` before the window
upstream_error_rate        calls failed upstream / calls that went          above
                           upstream > ``above``
consent_failures           ``consent_unavailable`` refusals > ``above``     above
=========================  ===============================================  ==========

A rate needs at least ``min_count`` (default 20) of its denominator in the window (and,
for a spike, in the baseline too) so that one blocked call of three trips nothing.
The switch engaged is ``scope`` (default ``use_case:<the use case>``) in ``mode``.
Nothing here does I/O; the gateway counts, shares the counts between replicas and
engages the switch (gateway/tripwires.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from policies.durations import parse_duration
from policies.schema import Tripwire

__all__ = [
    "DEFAULT_MIN_COUNT",
    "SERIES",
    "CompiledTripwire",
    "Trip",
    "compile_tripwire",
    "evaluate_tripwire",
]

#: Every count a tripwire may read; ``baseline_`` + a name is the same over the baseline.
SERIES: tuple[str, ...] = (
    "calls",
    "redactions",
    "tool_calls",
    "tool_calls_blocked",
    "upstream_calls",
    "upstream_errors",
    "consent_failures",
)
DEFAULT_MIN_COUNT = 20
#: The window is counted in this many buckets (so it slides in tenths of itself).
BUCKETS_PER_WINDOW = 10
_MIN_WINDOW_S = 10
_MAX_WINDOW_S = 86400
_RATES = ("tool_calls_blocked_rate", "upstream_error_rate")
_NEEDS: dict[str, tuple[str, ...]] = {
    "tool_calls_blocked_rate": ("tool_calls", "tool_calls_blocked"),
    "upstream_error_rate": ("upstream_calls", "upstream_errors"),
    "redaction_rate_spike": ("calls", "redactions"),
    "consent_failures": ("consent_failures",),
}


@dataclass(frozen=True, slots=True)
class CompiledTripwire:
    """One tripwire, ready to evaluate; ``engaged_by`` is ``tripwire:<name>``."""

    name: str
    use_case: str
    kind: str
    mode: str  # halt | degrade
    scope: str
    window_s: int
    above: float | None
    factor: float | None
    baseline_s: int | None
    min_count: int

    @property
    def engaged_by(self) -> str:
        return f"tripwire:{self.name}"

    @property
    def series(self) -> tuple[str, ...]:
        """The counts this tripwire reads."""
        return _NEEDS[self.kind]

    @property
    def bucket_s(self) -> int:
        """Width of one counting bucket: a tenth of the window (at least a second)."""
        return max(1, self.window_s // BUCKETS_PER_WINDOW)

    def describe(self) -> str:
        """One line for ``casegate policy check``."""
        if self.kind == "redaction_rate_spike":
            test = (
                f"redactions per call > {_num(self.factor)}x the previous {_dur(self.baseline_s)}'s"
            )
        elif self.kind == "consent_failures":
            test = f"consent-service failures > {_num(self.above)}"
        else:
            what = "tool calls blocked" if self.kind == _RATES[0] else "upstream errors"
            test = f"{what} > {_pct(self.above)}"
        minimum = "" if self.kind == "consent_failures" else f", at least {self.min_count}"
        return f"{self.name}: {test} in {_dur(self.window_s)}{minimum} -> {self.mode} {self.scope}"


@dataclass(frozen=True, slots=True)
class Trip:
    """A tripwire that tripped: the figures (integers) and a sentence saying why."""

    tripwire: CompiledTripwire
    figures: Mapping[str, int]
    summary: str


def compile_tripwire(
    spec: Tripwire,
    use_case: str,
    at: str,
    add_error: Callable[[str, str], None],
    valid_scope: Callable[[str], str | None],
) -> CompiledTripwire:
    """The runtime form of *spec*; problems go to *add_error* with their path.

    *valid_scope* returns the canonical form of a scope, or ``None`` if it names nothing.
    """
    kind = spec.kind
    window_s = parse_duration(spec.window)
    if not _MIN_WINDOW_S <= window_s <= _MAX_WINDOW_S:
        add_error(f"{at}.window", "must be between 10s and 1d")

    def refuse(field: str, why: str) -> None:
        if getattr(spec, field) is not None:
            add_error(f"{at}.{field}", f"not used by kind {kind} ({why})")

    if kind in _RATES:
        if spec.above is None:
            add_error(f"{at}.above", "required for this kind: a fraction such as 0.05 (5%)")
        elif not 0 <= spec.above < 1:
            add_error(f"{at}.above", "must be a fraction from 0 up to (not including) 1")
        refuse("factor", "give above")
        refuse("baseline", "only redaction_rate_spike compares with a baseline")
    elif kind == "redaction_rate_spike":
        if spec.factor is None:
            add_error(f"{at}.factor", "required for this kind: e.g. 3 (three times the baseline)")
        elif spec.factor <= 1:
            add_error(f"{at}.factor", "must be greater than 1")
        refuse("above", "give factor")
    else:  # consent_failures: a count
        if spec.above is None:
            add_error(f"{at}.above", "required for this kind: the count of failures")
        elif isinstance(spec.above, float) or spec.above < 0:
            add_error(f"{at}.above", "must be a whole number of failures (0 or more)")
        refuse("factor", "give above")
        refuse("baseline", "only redaction_rate_spike compares with a baseline")
        refuse("min_count", "above is already a count")
    baseline_s = None
    if kind == "redaction_rate_spike":
        baseline_s = parse_duration(spec.baseline or "1h")
        if baseline_s < window_s or baseline_s > _MAX_WINDOW_S:
            add_error(f"{at}.baseline", "must be at least the window and at most 1d")
    scope = f"use_case:{use_case}"
    if spec.scope is not None:
        canonical = valid_scope(spec.scope)
        if canonical is None:
            add_error(
                f"{at}.scope",
                "names nothing in this bundle (global, use_case:X, action_class:X, "
                "route:X, tool:X or model:M)",
            )
        else:
            scope = canonical
    return CompiledTripwire(
        name=spec.name,
        use_case=use_case,
        kind=kind,
        mode=spec.mode,
        scope=scope,
        window_s=window_s,
        above=float(spec.above) if spec.above is not None else None,
        factor=float(spec.factor) if spec.factor is not None else None,
        baseline_s=baseline_s,
        min_count=spec.min_count if spec.min_count is not None else DEFAULT_MIN_COUNT,
    )


def evaluate_tripwire(tw: CompiledTripwire, counts: Mapping[str, int]) -> Trip | None:
    """Whether *counts* (the window's, and ``baseline_*`` for a spike) trip *tw*."""

    def n(name: str) -> int:
        return int(counts.get(name, 0))

    window = _dur(tw.window_s)
    if tw.kind == "consent_failures":
        failures = n("consent_failures")
        assert tw.above is not None
        if failures <= tw.above:
            return None
        figures = {"consent_failures": failures, "above": int(tw.above), "window_s": tw.window_s}
        summary = f"{failures} consent-service failures in {window} (> {_num(tw.above)})"
        return Trip(tw, figures, summary)
    if tw.kind == "redaction_rate_spike":
        return _spike(
            tw, n("calls"), n("redactions"), n("baseline_calls"), n("baseline_redactions")
        )
    total_name, bad_name = _NEEDS[tw.kind]
    total, bad = n(total_name), n(bad_name)
    assert tw.above is not None
    if total < max(1, tw.min_count) or bad <= tw.above * total:
        return None
    figures = {
        bad_name: bad,
        total_name: total,
        "rate_bp": bad * 10_000 // total,
        "above_bp": round(tw.above * 10_000),
        "min_count": tw.min_count,
        "window_s": tw.window_s,
    }
    what = "tool calls blocked" if tw.kind == _RATES[0] else "calls failed upstream"
    summary = f"{bad} of {total} {what} ({_pct(bad / total)}) in {window} (> {_pct(tw.above)})"
    return Trip(tw, figures, summary)


def _spike(
    tw: CompiledTripwire, calls: int, redactions: int, b_calls: int, b_redactions: int
) -> Trip | None:
    assert tw.factor is not None and tw.baseline_s is not None
    need = max(1, tw.min_count)
    if calls < need or b_calls < need or redactions == 0:
        return None
    # redactions / calls > factor * b_redactions / b_calls, without dividing
    if redactions * b_calls <= tw.factor * b_redactions * calls:
        return None
    figures = {
        "calls": calls,
        "redactions": redactions,
        "per_call_milli": redactions * 1000 // calls,
        "baseline_calls": b_calls,
        "baseline_redactions": b_redactions,
        "baseline_per_call_milli": b_redactions * 1000 // b_calls,
        "factor_milli": round(tw.factor * 1000),
        "window_s": tw.window_s,
        "baseline_s": tw.baseline_s,
    }
    summary = (
        f"{redactions} redactions in {calls} calls ({redactions / calls:.2f} per call) in "
        f"{_dur(tw.window_s)}, > {_num(tw.factor)}x the previous {_dur(tw.baseline_s)}'s "
        f"{b_redactions / b_calls:.2f} per call ({b_redactions} in {b_calls})"
    )
    return Trip(tw, figures, summary)


def _pct(value: float | None) -> str:
    return f"{(value or 0) * 100:.1f}%"


def _num(value: float | None) -> str:
    return f"{value:g}" if value is not None else "?"


def _dur(seconds: int | None) -> str:
    s = seconds or 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"
