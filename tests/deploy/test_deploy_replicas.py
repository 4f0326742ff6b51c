"""The configuration the manifests describe, run for real: two replicas on PostgreSQL.

deploy/config/casegate.yaml and bundle.yaml (the files compose mounts and the Kustomize
ConfigMaps carry) run unchanged except for what points outside this machine: the Redis
URL and the provider's api_base (the local stub). PostgreSQL is reached exactly as in
the manifests, through libpq's PG* variables behind ``state: postgresql://``.
``casegate migrate`` runs from two processes at once first (the migration Job racing a
replica's own start-up migration); then two ``casegate serve`` replicas answer calls,
stop on SIGTERM with status 0, and every call's lineage verifies across both chains.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _b64() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _libpq_env(pg_url: str) -> dict[str, str]:
    """The test's PostgreSQL schema as PG* variables (what the manifests set)."""
    url = urllib.parse.urlsplit(pg_url)
    options = urllib.parse.parse_qs(url.query).get("options", [""])[0]
    env = {
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": url.path.lstrip("/"),
        "PGPASSWORD": "unused-with-trust-auth",
        "PGSSLMODE": "prefer",
    }
    if options:
        env["PGOPTIONS"] = options  # -csearch_path=<the test's schema>
    return env


def _deploy_config(stub_url: str, redis_url: str) -> dict[str, Any]:
    original = yaml.safe_load((DEPLOY / "config" / "casegate.yaml").read_text())
    config = json.loads(json.dumps(original))
    config["redis"] = redis_url
    for deployments in config["routes"].values():
        for dep in deployments:
            dep["api_base"] = stub_url
    # everything else is the deployed file as it is
    changed = {k for k in original if original[k] != config[k]}
    assert changed == {"redis", "routes"}
    assert config["state"] == "postgresql://"
    return config


def _secrets(config: dict[str, Any]) -> dict[str, str]:
    names: set[str] = set()
    for deployments in config["routes"].values():
        names.update(d["api_key_env"] for d in deployments if d.get("api_key_env"))
    names.update(c["key_env"] for c in config["clients"])
    names.update(o["token_env"] for o in config["operators"])
    names.update(config["keys"].values())
    return {name: _b64() for name in sorted(names)}


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _call(url: str, key: str, *, stream: bool) -> tuple[int, str, str]:
    body = {"model": "support-default", "messages": user("Where is my parcel?"), **casegate()}
    hdrs = {"Authorization": f"Bearer {key}", **headers(case_id="CASE-DEPLOY-1")}
    if not stream:
        resp = httpx.post(url + "/v1/chat/completions", json=body, headers=hdrs, timeout=30)
        return resp.status_code, resp.headers["x-casegate-lineage-id"], resp.text
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        json={**body, "stream": True},
        headers=hdrs,
        timeout=30,
    ) as resp:
        text = resp.read().decode()
        return resp.status_code, resp.headers["x-casegate-lineage-id"], text


def test_two_replicas_on_postgres_and_redis_from_the_deploy_config(
    tmp_path: Path, upstream: UpstreamStub, pg_url: str, redis_url: str
) -> None:
    config = _deploy_config(upstream.url, redis_url)
    creds = _secrets(config)
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CASEGATE_", "OTEL_", "PG"))
    }
    base_env.setdefault("PYTHONPATH", str(ROOT))
    env = {**base_env, **_libpq_env(pg_url), **creds, "CASEGATE_GRACE_S": "10"}

    # 1. the migration Job and a replica's start-up migration, at the same moment
    shared = tmp_path / "config"
    shared.mkdir()
    (shared / "casegate.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(DEPLOY / "config" / "bundle.yaml", shared / "bundle.yaml")
    runs = [
        _cli("migrate", "--config", str(shared / "casegate.yaml"), env=env, cwd=tmp_path)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum("applied [" in out for out in outputs) == 1, outputs  # the other found it done
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()]
    assert versions and len(versions) == len(set(versions))

    # 2. two replicas of the same config and secrets
    replicas: list[GatewayProcess] = []
    try:
        for name in ("replica-a", "replica-b"):
            workdir = tmp_path / name
            workdir.mkdir()
            shutil.copy(DEPLOY / "config" / "bundle.yaml", workdir / "bundle.yaml")
            replicas.append(
                GatewayProcess.start(
                    workdir, config, env={**_libpq_env(pg_url), **creds, "CASEGATE_GRACE_S": "10"}
                )
            )
        ready = [httpx.get(gw.url + "/readyz", timeout=5).json() for gw in replicas]
        assert [r["state_store"] for r in ready] == ["postgres", "postgres"]
        assert {r["policy"]["version"] for r in ready} == {"deploy-2026-11-28.1"}

        upstream.set_default(Reply.text("on it"))
        ids: list[str] = []
        for i in range(6):
            gw = replicas[i % 2]
            status, lineage_id, text = _call(gw.url, creds["HELPDESK_KEY"], stream=i >= 4)
            assert status == 200, text
            assert ("on it" in text) if i < 4 else ("data: [DONE]" in text and "on" in text)
            ids.append(lineage_id)
        codes = [gw.stop() for gw in replicas]
        assert codes == [0, 0], [gw.log() for gw in replicas]
    finally:
        for gw in replicas:
            gw.stop()

    # 3. lineage from both replicas, one record per call, chains that verify
    with psycopg.connect(pg_url) as conn:
        events = [
            json.loads(r[0]) for r in conn.execute("SELECT event FROM lineage_events").fetchall()
        ]
    kinds = Counter((e["lineage_id"], e["type"]) for e in events)
    for lid in ids:
        assert kinds[(lid, "request.started")] == 1 and kinds[(lid, "request.ended")] == 1, lid
    chains = {e["chain"] for e in events if e["lineage_id"] in ids}
    assert len(chains) == 2  # one per replica process
    verify = _cli("lineage", "verify", "--state", "postgresql://", env=env, cwd=tmp_path)
    out = verify.communicate(timeout=60)[0]
    assert verify.returncode == 0, out
    assert out.startswith("OK:"), out
