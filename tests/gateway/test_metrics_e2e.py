"""`GET /metrics` sums every worker of `casegate serve --workers 2`, in Prometheus text,
with the GenAI histograms, the call counters and the overhead histogram, and never a
raw identifier or message text in a label."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

import httpx

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import SET_PRIORITY, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
PII = "olga.k@example.net"
CUSTOMER = "cust-metrics-99"


def parse(text: str) -> dict[str, dict[str, float]]:
    """name -> {label text: value}; every line must be valid exposition format."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")) or not line, line
            continue
        match = LINE.match(line)
        assert match, f"not Prometheus text: {line!r}"
        out[match.group(1)][match.group(2) or ""] = float(match.group(3))
    return out


def total(series: dict[str, float], **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in series.items() if all(w in k for w in want))


def call(gw: GatewayProcess, creds: Credentials, **kw: Any) -> httpx.Response:
    extra = {"customer_id": CUSTOMER, "case_id": "M-1"}
    if kw.get("action_class"):
        extra["action_class"] = kw.pop("action_class")
    body: dict[str, Any] = {
        "model": "support-default",
        "messages": user(f"write to {PII}"),
        **casegate(customer=kw.pop("customer", None)),
        **kw,
    }
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers(**extra)},
        json=body,
        timeout=20,
    )


def test_metrics_are_summed_over_two_workers(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    gw = start_gateway(
        gateway_config(upstream.url), workers=2, env={"CASEGATE_METRICS_FLUSH_MS": "100"}
    )
    statuses = [call(gw, creds).status_code for _ in range(4)]
    statuses += [call(gw, creds, customer={"authenticated": False}).status_code for _ in range(2)]
    upstream.script(Reply.tool_calls([{"name": "set_priority", "arguments": {"priority": "P1"}}]))
    statuses.append(call(gw, creds, action_class="automation", tools=[SET_PRIORITY]).status_code)
    upstream.set_default(Reply.error(500))
    statuses.append(call(gw, creds).status_code)
    upstream.clear()
    streamed = call(gw, creds, stream=True)
    statuses.append(streamed.status_code)
    assert "data: [DONE]" in streamed.text
    assert statuses == [200] * 4 + [403] * 2 + [200, 502, 200]

    def scrape() -> dict[str, dict[str, float]]:
        resp = httpx.get(gw.url + "/metrics", timeout=10)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert PII not in resp.text and CUSTOMER not in resp.text and "M-1" not in resp.text
        return parse(resp.text)

    deadline = time.monotonic() + 10
    metrics = scrape()
    while sum(metrics["casegate_requests_total"].values()) < 9 and time.monotonic() < deadline:
        time.sleep(0.1)
        metrics = scrape()
    for _ in range(6):  # whichever worker answers, the sum is the same
        again = scrape()
        assert again["casegate_metrics_workers"][""] == 2
        assert again["casegate_requests_total"] == metrics["casegate_requests_total"]

    requests = metrics["casegate_requests_total"]
    assert total(requests) == 9
    assert total(requests, use_case="triage", decision="allowed") == 6  # 4 + stream + failure
    assert total(requests, decision="refused") == 2
    assert total(requests, decision="degraded") == 1  # the downgraded tool call
    assert total(metrics["casegate_refusals_total"], code="ineligible") == 2
    assert total(metrics["casegate_tool_calls_blocked_total"]) == 1
    assert total(metrics["casegate_policy_exceptions_total"]) == 3
    durations = metrics["gen_ai_client_operation_duration_seconds_count"]
    assert total(durations) == 4 + 1 + 6 + 1  # attempts: ok, tool, 2 deployments x 3, stream
    assert total(durations, gen_ai_provider_name="openai", gen_ai_request_model="gpt-primary") >= 4
    failed = sum(v for k, v in durations.items() if "error_type=" in k)
    assert failed == 6
    tokens = metrics["gen_ai_client_token_usage_count"]
    assert total(tokens, gen_ai_token_type="input") >= 5
    assert total(metrics["gen_ai_client_operation_time_to_first_chunk_seconds_count"]) == 1
    overhead = metrics["casegate_gateway_overhead_seconds_count"]
    assert total(overhead, stream="false") == 5 and total(overhead, stream="true") == 1
    buckets = metrics["casegate_gateway_overhead_seconds_bucket"]
    assert total(buckets, le="+Inf", stream="false") == 5
