"""The compose stack, read as data: services, dependencies, health checks, no secrets.

No Docker engine runs here, so the file is parsed and its wiring asserted: two
gateway replicas behind nginx, a one-shot `migrate` they wait for, PostgreSQL and Redis
with health checks, OTLP to the collector and on to Jaeger, every secret a reference.
The config and bundle it mounts are checked with the real `casegate` commands.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GATEWAYS = ("gateway-1", "gateway-2")
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "config" / "casegate.yaml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to deploy/)."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = host
    return out


def _secret_names(config: dict[str, Any]) -> set[str]:
    names: set[str] = set()

    def add(value: Any) -> None:
        names.update([value] if isinstance(value, str) else list(value or []))

    for deployments in config["routes"].values():
        for dep in deployments:
            add(dep.get("api_key_env"))
    for client in config["clients"]:
        add(client["key_env"])
    for operator in config["operators"]:
        add(operator["token_env"])
    for value in config["keys"].values():
        add(value)
    return names


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        *GATEWAYS,
        "lb",
        "migrate",
        "postgres",
        "redis",
        "otel-collector",
        "jaeger",
        "prometheus",  # deploy/observability/ (tests/deploy/test_deploy_observability.py)
        "grafana",
    }
    # only the load balancer and the UIs are published, on loopback only
    published = {name: s["ports"] for name, s in compose["services"].items() if "ports" in s}
    assert published == {
        "lb": ["127.0.0.1:8080:8080"],
        "jaeger": ["127.0.0.1:16686:16686"],
        "prometheus": ["127.0.0.1:9090:9090"],
        "grafana": ["127.0.0.1:3000:3000"],
    }


def test_dependencies_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in GATEWAYS:
        gw = services[name]
        assert gw["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert gw["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert "otel-collector" in gw["depends_on"]
        check = " ".join(gw["healthcheck"]["test"])
        assert "/readyz" in check and "urllib" in check  # no curl in the image
    migrate = services["migrate"]
    assert migrate["command"][0] == "migrate"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["lb"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in GATEWAYS
    }
    for name in ("postgres", "redis", "lb"):
        assert services[name]["healthcheck"]["test"], name
    assert services["otel-collector"]["depends_on"] == {"jaeger": {"condition": "service_started"}}


def test_the_load_balancer_fronts_both_replicas_and_streams() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server\s+([\w-]+):8080\b", nginx, re.MULTILINE)
    assert sorted(servers) == sorted(GATEWAYS)
    assert re.search(r"proxy_buffering\s+off;", nginx)  # SSE chunks are not held back
    assert re.search(r"proxy_next_upstream\s+error\s+timeout;", nginx)  # never non_idempotent
    # nginx must not answer a large body before the gateway's OpenAI-shaped 413 does
    limit = re.search(r"client_max_body_size\s+(\d+)m;", nginx)
    assert limit is not None
    config = yaml.safe_load((DEPLOY / "config" / "casegate.yaml").read_text())
    assert int(limit[1]) * 2**20 > config["limits"]["max_body_bytes"]


def test_gateways_run_the_mounted_config_and_bundle(
    compose: dict[str, Any], config: dict[str, Any]
) -> None:
    for name in (*GATEWAYS, "migrate"):
        service = compose["services"][name]
        assert service["image"] == "casegate:local"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        mounts = _mounts(service)
        config_path = "/etc/casegate/casegate.yaml"
        assert mounts[config_path] == "./config/casegate.yaml"
        bundle = os.path.normpath(
            os.path.join(os.path.dirname(config_path), config["policy_bundle"])
        )
        assert mounts[bundle] == "./config/bundle.yaml"
        assert all(v.endswith(":ro") for v in service["volumes"])
        if name != "migrate":
            assert _env(service)["CASEGATE_CONFIG"] == config_path
        else:
            assert service["command"][1:] == ["--config", config_path]
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
        assert service["cap_drop"] == ["ALL"]
        env = _env(service)
        assert env["PGHOST"] == "postgres" and env["PGDATABASE"] == "casegate"
    assert config["state"] == "postgresql://"  # completed by the PG* variables above
    assert config["redis"] == "redis://redis:6379/0"


def test_telemetry_flows_to_the_collector_and_on_to_jaeger(compose: dict[str, Any]) -> None:
    for name in GATEWAYS:
        env = _env(compose["services"][name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"] == "casegate"
        assert f"service.instance.id={name}" in env["OTEL_RESOURCE_ATTRIBUTES"]
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    traces = collector["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    (exporter,) = traces["exporters"]
    assert exporter.startswith("otlp")
    assert collector["exporters"][exporter]["endpoint"] == "jaeger:4317"
    assert "metrics" in collector["service"]["pipelines"]  # the gateway exports metrics too
    mounts = _mounts(compose["services"]["otel-collector"])
    assert mounts["/etc/otelcol/config.yaml"] == "./otel-collector.yaml"
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_graceful_stop_budget(compose: dict[str, Any], config: dict[str, Any]) -> None:
    for name in GATEWAYS:
        service = compose["services"][name]
        grace = int(_env(service)["CASEGATE_GRACE_S"])
        stop = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert stop is not None
        assert int(stop[1]) > grace > config["limits"]["deadline_s"]


def test_no_secret_values(compose: dict[str, Any], config: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key):
                assert REFERENCE.match(value), f"{name}: {key} is not a ${{reference}}"
        if "env_file" in service:
            assert service["env_file"] == [".env"], name
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${PGPASSWORD:?"
    )
    # .env.example: names only, every secret the config names, nothing filled in
    example = (DEPLOY / ".env.example").read_text().splitlines()
    entries = dict(
        line.split("=", 1) for line in example if line.strip() and not line.startswith("#")
    )
    assert all(value == "" for value in entries.values()), entries
    assert set(entries) == _secret_names(config) | {"PGPASSWORD"}
    # the filled-in copy is git-ignored
    assert (DEPLOY / ".gitignore").read_text().split("\n").count(".env") == 1


def _b64() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def test_the_config_and_bundle_pass_casegate_checks(config: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASEGATE_", "OTEL_"))}
    env.update({name: _b64() for name in _secret_names(config)})
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "config",
            "check",
            str(DEPLOY / "config" / "casegate.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bundle = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "policy",
            "check",
            str(DEPLOY / "config" / "bundle.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert bundle.returncode == 0, bundle.stdout + bundle.stderr
    # a missing secret is named, and the gateway refuses (fail closed)
    del env["HELPDESK_KEY"]
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "config",
            "check",
            str(DEPLOY / "config" / "casegate.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert refused.returncode == 2 and "HELPDESK_KEY" in refused.stderr
