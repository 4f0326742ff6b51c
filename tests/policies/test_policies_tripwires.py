"""Tripwires in the bundle: schema, compiled form, `policy check`, and the pure evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from policies import (
    BundleError,
    CompiledTripwire,
    evaluate_tripwire,
    load_bundle,
    load_bundle_file,
    render_check,
)

TESTDATA = Path(__file__).parent / "testdata"
VALID = TESTDATA / "valid" / "tripwires.yaml"
INVALID = sorted((TESTDATA / "invalid").glob("tripwire_*.yaml"))


def _expectation(path: Path) -> tuple[str, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    where, _, message = first.removeprefix("# expect: ").partition(": ")
    return where, message


def test_there_are_invalid_fixtures() -> None:
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_tripwire_names_its_path(path: Path) -> None:
    where, message = _expectation(path)
    with pytest.raises(BundleError) as info:
        load_bundle_file(path)
    matches = [m for p, m in info.value.errors if p == where]
    assert matches, f"no error at {where!r}; got {info.value.errors}"
    assert any(m.startswith(message) for m in matches), matches


def test_compiled_form_and_defaults() -> None:
    policy = load_bundle_file(VALID).policy
    tws = {tw.name: tw for tw in policy.tripwires()}
    assert list(tws) == [
        "triage-tool-blocks",
        "triage-pii-spike",
        "triage-upstream",
        "triage-consent",
        "triage-model",
        "triage-tool",
    ]
    blocks = tws["triage-tool-blocks"]
    assert (blocks.kind, blocks.mode, blocks.scope) == (
        "tool_calls_blocked_rate",
        "degrade",
        "use_case:triage",
    )
    assert (blocks.window_s, blocks.bucket_s, blocks.above, blocks.min_count) == (300, 30, 0.05, 20)
    assert blocks.engaged_by == "tripwire:triage-tool-blocks"
    assert blocks.series == ("tool_calls", "tool_calls_blocked")
    spike = tws["triage-pii-spike"]
    assert (spike.factor, spike.baseline_s, spike.min_count) == (3.0, 3600, 20)  # defaults
    assert tws["triage-upstream"].scope == "route:support-default"  # canonical form
    assert tws["triage-consent"].scope == "global"
    assert tws["triage-model"].scope == "model:openai/gpt-4o-mini"
    assert tws["triage-model"].window_s == 300  # default window
    assert tws["triage-tool"].scope == "tool:set_priority"


def test_a_bundle_without_tripwires_has_none() -> None:
    minimal = load_bundle_file(TESTDATA / "valid" / "minimal.yaml").policy
    assert minimal.tripwires() == ()
    assert minimal.use_cases["triage"].tripwires == ()


def test_policy_check_shows_them() -> None:
    text = render_check(load_bundle_file(VALID))
    assert "  tripwires (engage a switch by themselves; never released by themselves):\n" in text
    for line in (
        "triage-tool-blocks: tool calls blocked > 5.0% in 5m, at least 20"
        " -> degrade use_case:triage",
        "triage-pii-spike: redactions per call > 3x the previous 1h's in 5m, at least 20"
        " -> halt use_case:triage",
        "triage-upstream: upstream errors > 20.0% in 1m, at least 20"
        " -> degrade route:support-default",
        "triage-consent: consent-service failures > 10 in 1m -> halt global",
    ):
        assert f"    {line}\n" in text, text


def _tw(kind: str, **kw: Any) -> CompiledTripwire:
    base: dict[str, Any] = {
        "name": "t",
        "use_case": "triage",
        "kind": kind,
        "mode": "halt",
        "scope": "use_case:triage",
        "window_s": 300,
        "above": None,
        "factor": None,
        "baseline_s": None,
        "min_count": 20,
    }
    base.update(kw)
    return CompiledTripwire(**base)


BLOCKS = _tw("tool_calls_blocked_rate", above=0.05)
UPSTREAM = _tw("upstream_error_rate", above=0.2)
SPIKE = _tw("redaction_rate_spike", factor=3.0, baseline_s=3600)
CONSENT = _tw("consent_failures", above=10.0)

# (tripwire, counts, trips?)
CASES: list[tuple[str, CompiledTripwire, dict[str, int], bool]] = [
    ("blocks: nothing counted", BLOCKS, {}, False),
    (
        "blocks: under the minimum count",
        BLOCKS,
        {"tool_calls": 19, "tool_calls_blocked": 19},
        False,
    ),
    ("blocks: exactly 5% is not above", BLOCKS, {"tool_calls": 40, "tool_calls_blocked": 2}, False),
    ("blocks: above 5%", BLOCKS, {"tool_calls": 40, "tool_calls_blocked": 3}, True),
    (
        "blocks: above 0 with min 1",
        _tw("tool_calls_blocked_rate", above=0.0, min_count=1),
        {"tool_calls": 1, "tool_calls_blocked": 1},
        True,
    ),
    (
        "blocks: min_count 0 still needs a call",
        _tw("tool_calls_blocked_rate", above=0.0, min_count=0),
        {},
        False,
    ),
    ("upstream: 20% is not above", UPSTREAM, {"upstream_calls": 20, "upstream_errors": 4}, False),
    ("upstream: 25%", UPSTREAM, {"upstream_calls": 20, "upstream_errors": 5}, True),
    (
        "upstream: other series do not count",
        UPSTREAM,
        {"calls": 100, "tool_calls_blocked": 50},
        False,
    ),
    ("spike: no baseline", SPIKE, {"calls": 50, "redactions": 100}, False),
    (
        "spike: thin baseline",
        SPIKE,
        {"calls": 50, "redactions": 100, "baseline_calls": 19, "baseline_redactions": 1},
        False,
    ),
    (
        "spike: 3x is not above",
        SPIKE,
        {"calls": 20, "redactions": 6, "baseline_calls": 100, "baseline_redactions": 10},
        False,
    ),
    (
        "spike: 4x",
        SPIKE,
        {"calls": 20, "redactions": 8, "baseline_calls": 100, "baseline_redactions": 10},
        True,
    ),
    (
        "spike: baseline of zero, some now",
        SPIKE,
        {"calls": 20, "redactions": 1, "baseline_calls": 20},
        True,
    ),
    ("spike: none now", SPIKE, {"calls": 20, "baseline_calls": 20}, False),
    (
        "spike: window under the minimum",
        SPIKE,
        {"calls": 19, "redactions": 90, "baseline_calls": 99, "baseline_redactions": 1},
        False,
    ),
    ("consent: 10 is not above 10", CONSENT, {"consent_failures": 10}, False),
    ("consent: 11", CONSENT, {"consent_failures": 11}, True),
    (
        "consent: above 0 trips on one",
        _tw("consent_failures", above=0.0),
        {"consent_failures": 1},
        True,
    ),
]


@pytest.mark.parametrize(
    ("tw", "counts", "trips"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_evaluate(tw: CompiledTripwire, counts: dict[str, int], trips: bool) -> None:
    trip = evaluate_tripwire(tw, counts)
    assert (trip is not None) is trips
    if trip is not None:
        assert trip.tripwire is tw
        assert all(type(v) is int for v in trip.figures.values())  # lineage: no floats
        assert trip.figures["window_s"] == tw.window_s


def test_figures_and_summaries() -> None:
    trip = evaluate_tripwire(BLOCKS, {"tool_calls": 40, "tool_calls_blocked": 3})
    assert trip is not None
    assert dict(trip.figures) == {
        "tool_calls_blocked": 3,
        "tool_calls": 40,
        "rate_bp": 750,
        "above_bp": 500,
        "min_count": 20,
        "window_s": 300,
    }
    assert trip.summary == "3 of 40 tool calls blocked (7.5%) in 5m (> 5.0%)"
    trip = evaluate_tripwire(UPSTREAM, {"upstream_calls": 20, "upstream_errors": 5})
    assert (
        trip is not None and trip.summary == "5 of 20 calls failed upstream (25.0%) in 5m (> 20.0%)"
    )
    trip = evaluate_tripwire(
        SPIKE, {"calls": 20, "redactions": 8, "baseline_calls": 100, "baseline_redactions": 10}
    )
    assert trip is not None
    assert trip.figures["per_call_milli"] == 400 and trip.figures["baseline_per_call_milli"] == 100
    assert trip.summary.startswith("8 redactions in 20 calls (0.40 per call) in 5m, > 3x")
    trip = evaluate_tripwire(CONSENT, {"consent_failures": 12})
    assert trip is not None and dict(trip.figures) == {
        "consent_failures": 12,
        "above": 10,
        "window_s": 300,
    }


def test_a_bundle_string_with_tripwires_loads_and_hashes_as_given() -> None:
    text = VALID.read_text()
    loaded = load_bundle(text)
    assert loaded.bundle.use_cases["triage"].tripwires[0].name == "triage-tool-blocks"
    assert len(loaded.policy.use_cases["triage"].tripwires) == 6
