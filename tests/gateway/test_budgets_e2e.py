"""Rate limits and hard budgets refuse (429) before anything goes upstream."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.stub import UpstreamStub


def away_from_a_minute_boundary() -> None:
    """Requests-per-minute windows are UTC minutes: keep a short test inside one."""
    while time.time() % 60 > 50:
        time.sleep(0.5)


def post(url: str, creds: Credentials, text: str = "x", key: str | None = None) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key or creds.helpdesk}", **headers()},
        json={"model": "support-default", "messages": user(text), **casegate()},
        timeout=15,
    )


def test_requests_per_minute_per_client(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    gw = start_gateway(
        gateway_config(upstream.url, budgets={"clients": {"helpdesk": {"requests_per_minute": 3}}})
    )
    away_from_a_minute_boundary()
    codes = [post(gw.url, creds).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    refused = post(gw.url, creds)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert refused.headers["x-casegate-decision"] == "refused"
    assert len(upstream.chat_requests) == 3
    # another client has its own cap (none here)
    assert post(gw.url, creds, key=creds.triage_only).status_code == 200


def test_token_budget_refuses_preflight_and_settles_to_usage(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    # triage caps max_tokens at 800: a call reserves (bytes/3 + 4/message) + 800 tokens
    gw = start_gateway(
        gateway_config(upstream.url, budgets={"use_cases": {"triage": {"tokens_per_day": 2000}}})
    )
    assert post(gw.url, creds).status_code == 200  # settled to the stub's 15 tokens
    assert post(gw.url, creds).status_code == 200
    db = sqlite3.connect(gw.workdir / "casegate.db")
    (used,) = db.execute(
        "SELECT value FROM budget_counters WHERE key = 'use_case:triage:tokens'"
    ).fetchone()
    assert used == 30  # the reservations were replaced by the reported usage
    big = post(gw.url, creds, text="y" * 6000)  # >= 2000 + 800 tokens by the bound
    assert big.status_code == 429
    assert big.json()["error"]["code"] == "budget_exhausted"
    assert len(upstream.chat_requests) == 2


def test_spend_budget_needs_prices_and_caps_spend(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials, tmp_path: Any
) -> None:
    prices = {
        "openai/gpt-primary": {"input_per_1k": 1.0, "output_per_1k": 2.0},
        "openai/gpt-secondary": {"input_per_1k": 1.0, "output_per_1k": 2.0},
    }
    # 800 output tokens at 2.0/1k = 1.6 reserved: a 2.0 cap admits one call at a time
    gw = start_gateway(
        gateway_config(
            upstream.url,
            budgets={"prices": prices, "clients": {"helpdesk": {"spend_per_day": 2.0}}},
        )
    )
    for _ in range(5):  # each settles to 10 in + 5 out tokens = 0.02
        assert post(gw.url, creds).status_code == 200
    assert post(gw.url, creds, text="z" * 3000).status_code == 429


@pytest.mark.redis
def test_budgets_are_shared_through_redis_across_replicas(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials, redis_url: str
) -> None:
    import uuid

    client = f"helpdesk-{uuid.uuid4().hex[:6]}"  # fresh counters in the shared Redis
    config = gateway_config(
        upstream.url,
        redis=redis_url,
        budgets={"clients": {client: {"requests_per_minute": 4}}},
    )
    config["clients"][0]["name"] = client
    a = start_gateway(config, name="a")
    b = start_gateway(config, name="b")
    away_from_a_minute_boundary()
    codes = [post(gw.url, creds).status_code for gw in (a, b, a, b, a, b)]
    assert sorted(codes) == [200, 200, 200, 200, 429, 429]
