"""Kill switches across replicas: two `casegate serve --workers 2` sharing PostgreSQL.

With Redis configured the change is fanned out by Redis pub/sub; without it, by
PostgreSQL LISTEN/NOTIFY. Either way the database is the truth and every worker of
the other replica refuses within one second (the contract bound; the measured figure
is printed, and `python -m bench.switches` measures its distribution).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.test_switches_e2e import (
    BOUND_S,
    OPERATORS,
    StreamReader,
    Tokens,
    acked,
    allows,
    chat,
    ended_event,
    engage,
    refuses,
    release,
    slow_stream,
    until,
)
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub

pytestmark = pytest.mark.postgres


def replica_config(stub_url: str, pg_url: str, redis_url: str | None) -> dict[str, object]:
    extra = {"redis": redis_url} if redis_url else {}
    return gateway_config(stub_url, state=pg_url, keys=True, operators=OPERATORS, **extra)


def first_refusal(url: str, key: str, within: float = 5.0) -> float:
    """Seconds until a call on *url* is refused by a kill switch."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if chat(url, key).status_code == 503:
            return time.monotonic() - start
    pytest.fail(f"no refusal within {within}s")


def pg_events(pg_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT event FROM lineage_events").fetchall()
    return [json.loads(r[0]) for r in rows]


@pytest.mark.redis
def test_two_replicas_with_redis(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    pg_url: str,
    redis_url: str,
) -> None:
    tokens = Tokens()
    cfg = replica_config(upstream.url, pg_url, redis_url)
    a = start_gateway(cfg, name="a", workers=2, env=tokens.env())
    b = start_gateway(cfg, name="b", workers=2, env=tokens.env())
    key, oncall = creds.helpdesk, creds.oncall
    until(lambda: acked(a.url, oncall, 0, 4), within=15)  # four workers, two replicas
    assert allows(b.url, key)

    # engage on A: B refuses within a second
    state = engage(a.url, oncall, "global", reason="incident 9")
    refused_after = first_refusal(b.url, key)
    until(lambda: acked(b.url, oncall, state["version"], 4), within=BOUND_S)
    assert refuses(b.url, key, n=8)
    print(
        f"\nRedis fan-out: replica B refused {refused_after * 1000:.1f} ms after the engage "
        "on A returned (one call included); all 4 workers acknowledged"
    )
    assert refused_after < BOUND_S
    listed = httpx.get(
        b.url + "/admin/kill-switches", headers={"Authorization": f"Bearer {oncall}"}
    ).json()
    replicas = {ack["replica"] for ack in listed["acknowledged_by"]}
    assert len(replicas) == 2 and len(listed["acknowledged_by"]) == 4

    # release on B: A serves again
    state = release(b.url, oncall, "global")
    until(lambda: acked(a.url, oncall, state["version"], 4), within=BOUND_S)
    assert allows(a.url, key)

    # a stream in flight on B is cut within a second of the engage on A returning
    slow_stream(upstream)
    reader = StreamReader(b.url, key)
    assert reader.first.wait(10)
    engage(a.url, oncall, "use_case:triage", reason="cut the streams")
    t_returned = time.monotonic()
    assert reader.done.wait(5)
    assert reader.error_at is not None, reader.frames
    cut_after = reader.error_at - t_returned
    print(f"stream on B cut {cut_after * 1000:.1f} ms after the engage on A returned")
    assert cut_after < BOUND_S
    assert reader.error()["code"] == "kill_switch_engaged"
    upstream.wait_idle(3)  # the upstream request was abandoned
    upstream.clear()
    end = ended_event(pg_events(pg_url), reader.lineage_id)["data"]
    assert end["refusal"] == "kill_switch_engaged"
    assert end["kill_switches"] == ["use_case:triage"]

    # a restart keeps the state
    a.stop()
    b.stop()
    a2 = start_gateway(cfg, name="a2", workers=2, env=tokens.env())
    assert refuses(a2.url, key)
    release(a2.url, oncall, "use_case:triage")
    until(lambda: allows(a2.url, key, n=4), within=BOUND_S)


def test_two_replicas_with_listen_notify(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    pg_url: str,
) -> None:
    tokens = Tokens()
    cfg = replica_config(upstream.url, pg_url, None)
    a = start_gateway(cfg, name="a", workers=2, env=tokens.env())
    b = start_gateway(cfg, name="b", workers=2, env=tokens.env())
    key, oncall = creds.helpdesk, creds.oncall
    until(lambda: acked(a.url, oncall, 0, 4), within=15)
    assert allows(b.url, key)
    state = engage(a.url, oncall, "route:support-default", reason="provider outage")
    refused_after = first_refusal(b.url, key)
    print(f"\nLISTEN/NOTIFY: replica B refused {refused_after * 1000:.1f} ms after the engage")
    assert refused_after < BOUND_S
    until(lambda: acked(b.url, oncall, state["version"], 4), within=BOUND_S)
    assert refuses(b.url, key)
    state = release(b.url, oncall, "route:support-default")
    until(lambda: acked(a.url, oncall, state["version"], 4), within=BOUND_S)
    assert allows(a.url, key)
