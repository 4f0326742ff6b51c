"""deploy/observability/: alerting rules (promtool), the Grafana dashboard, compose wiring,
and every metric the dashboard and the rules query, in a real gateway's /metrics.

promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it). Without it
these tests are skipped locally and fail under ``CASEGATE_REQUIRE_BACKENDS=1``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from policies import default_bundle_path
from tests.conftest import REQUIRE, Credentials, gateway_config
from tests.gateway.helpers import SET_PRIORITY, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
RULES = OBS / "casegate-alerts.yml"
DASHBOARD = OBS / "grafana" / "dashboards" / "casegate.json"
METRIC = re.compile(r"\b((?:casegate|gen_ai)_[a-z0-9_]+)\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if REQUIRE:
            pytest.fail(message + " (CASEGATE_REQUIRE_BACKENDS=1)")
        pytest.skip(message)
    return path


def run(*args: str, cwd: Path = OBS) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label names in by (...) and {...} left out)."""
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    return set(METRIC.findall(expr))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


# -- the alerting rules ------------------------------------------------------------------


def test_rules_check() -> None:
    out = run(promtool(), "check", "rules", str(RULES))
    assert "SUCCESS: 9 rules found" in out


def test_rules_unit_tests() -> None:
    out = run(promtool(), "test", "rules", "casegate-alerts.test.yml")
    assert "SUCCESS" in out


def test_rules_cover_what_operators_need() -> None:
    alerts = {
        r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
    }
    assert set(alerts) == {
        "CasegateKillSwitchHalt",
        "CasegateKillSwitchDegrade",
        "CasegateTripwireFired",
        "CasegateWorkerBehindSwitchState",
        "CasegateStateStoreUnreadable",
        "CasegateRefusalSpike",
        "CasegateUpstreamErrorSpike",
        "CasegateDraftQueueStale",
        "CasegateLineageWriteFailures",
    }
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_prometheus_config(tmp_path: Path) -> None:
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/casegate-alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    gateways = sorted(n for n in compose["services"] if n.startswith("gateway-"))
    assert job["static_configs"][0]["targets"] == [f"{g}:8080" for g in gateways]
    # promtool checks the config with the rules at a path that exists here
    shutil.copy(RULES, tmp_path / "casegate-alerts.yml")
    config["rule_files"] = [str(tmp_path / "casegate-alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    run(promtool(), "check", "config", str(tmp_path / "prometheus.yml"))


# -- the dashboard -----------------------------------------------------------------------


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] == "casegate-overview" and dash["title"] == "Casegate"
    assert isinstance(dash["schemaVersion"], int)
    provisioned = yaml.safe_load(
        (OBS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == [
        "Traffic and decisions",
        "Latency: gateway overhead against provider time",
        "Drafts awaiting approval",
        "Kill switches and tripwires",
        "Lineage and the state store",
    ]
    for p in dash["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["type"] in ("timeseries", "stat", "table"), p["title"]
        assert p["datasource"]["uid"] == source["uid"], p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == source["uid"] and t["expr"].strip()


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule: promtool parses it (Grafana's $__rate_interval
    becomes a real range first)."""
    rules = [
        {"record": f"casegate:dashboard_query_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run(promtool(), "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_compose_wires_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    deploy = ROOT / "deploy"
    for name in ("prometheus", "grafana"):
        for mount in services[name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (deploy / source).exists(), f"{name}: {source}"
    prom = " ".join(services["prometheus"]["volumes"])
    assert "./observability/casegate-alerts.yml:/etc/prometheus/rules/casegate-alerts.yml" in prom
    assert set(services["prometheus"]["depends_on"]) == {"gateway-1", "gateway-2"}
    graf = " ".join(services["grafana"]["volumes"])
    assert "./observability/grafana/provisioning:/etc/grafana/provisioning" in graf
    assert "./observability/grafana/dashboards:/var/lib/grafana/dashboards" in graf
    board = yaml.safe_load(
        (OBS / "grafana" / "provisioning" / "dashboards" / "casegate.yml").read_text()
    )
    assert board["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# -- every metric queried is in a real gateway's /metrics --------------------------------


def _bundle(tmp: Path) -> str:
    data = yaml.safe_load(default_bundle_path().read_text())
    data["version"] = "observability-1"
    data["use_cases"]["triage"]["tripwires"] = [
        {
            "name": "triage-tool-blocks",
            "kind": "tool_calls_blocked_rate",
            "above": 0.3,
            "min_count": 2,
            "window": "10m",
            "mode": "degrade",
        }
    ]
    path = tmp / "bundle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _mixed_calls(url: str, key: str, upstream: UpstreamStub) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "support-default", "messages": user("Parcel late, mail ann@example.com")}

    def post(extra: dict[str, Any], hdrs: dict[str, str], **payload: Any) -> httpx.Response:
        return httpx.post(
            url + "/v1/chat/completions",
            json={**body, **payload, **extra},
            headers={**auth, **hdrs},
            timeout=15,
        )

    assert post(casegate(), headers()).status_code == 200
    assert post(casegate(customer={"authenticated": False}), headers()).status_code == 403
    streamed = post(casegate(), headers(), stream=True)
    assert "data: [DONE]" in streamed.text
    draft = post(casegate(), headers("reply_drafting"))
    assert draft.json()["casegate"]["decision"] == "pending_approval"
    upstream.script(
        Reply.tool_calls([{"name": "set_priority", "arguments": {"priority": "P1"}}]),
        Reply.tool_calls([{"name": "set_priority", "arguments": {"priority": "P2"}}]),
    )
    for _ in range(2):
        resp = post(casegate(), headers(action_class="automation"), tools=[SET_PRIORITY])
        assert resp.status_code == 200
    upstream.set_default(Reply.error(500))
    assert post(casegate(), headers()).status_code == 502
    upstream.clear()


def test_every_queried_metric_is_exposed(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
) -> None:
    cfg = gateway_config(upstream.url, policy_bundle=_bundle(tmp_path))
    gw = start_gateway(
        cfg,
        env={"CASEGATE_TRIPWIRE_FLUSH_MS": "50", "CASEGATE_METRICS_FLUSH_MS": "50"},
    )
    _mixed_calls(gw.url, creds.helpdesk, upstream)

    def scrape() -> str:
        return httpx.get(gw.url + "/metrics", timeout=10).text

    # the tripwire (1 blocked of 2 tool calls > 30 %) engages its degrade
    deadline = time.monotonic() + 5
    text = scrape()
    while "casegate_kill_switch_engaged{" not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = scrape()
    # a halt refusal too, so every refusal series exists
    op = {"Authorization": f"Bearer {creds.oncall}"}
    engaged = httpx.post(
        gw.url + "/admin/kill-switches",
        json={"scope": "use_case:reply_drafting", "mode": "halt", "reason": "drill"},
        headers=op,
    )
    assert engaged.status_code == 200
    refused = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "support-default", "messages": user("hi"), **casegate()},
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers("reply_drafting")},
    )
    assert refused.json()["error"]["code"] == "kill_switch_engaged"
    text = scrape()

    samples = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    queried = {m for e in dashboard_exprs() + rule_exprs() for m in metric_names(e)}
    assert len(queried) >= 20
    missing = sorted(queried - samples)
    assert not missing, f"queried but not in /metrics: {missing}\n{text}"
    # the figures behind the panels are what happened
    assert (
        'casegate_kill_switch_engaged{scope="use_case:triage",mode="degrade",source="tripwire"} 1'
        in text
    )
    operator = 'scope="use_case:reply_drafting",mode="halt",source="operator"'
    assert f"casegate_kill_switch_engaged{{{operator}}} 1" in text
    assert "casegate_drafts_pending 1\n" in text
    assert "casegate_switch_workers_behind 0\n" in text
    assert "casegate_lineage_write_failures_total 0\n" in text
    assert re.search(r'casegate_refusals_total\{code="ineligible",use_case="triage"\} 1\n', text)
    (OBS_OUT := ROOT / "test-artifacts" / "observability").mkdir(parents=True, exist_ok=True)
    (OBS_OUT / "metrics.txt").write_text(text)
