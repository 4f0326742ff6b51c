"""Shared fixtures: the upstream stub, real gateways, and the real backends.

Backends (PostgreSQL, Redis) are the machine's own servers. Where one does not answer,
its tests are skipped locally, and FAIL when ``CASEGATE_REQUIRE_BACKENDS=1`` (CI).
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PG_URL = os.environ.get("CASEGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CASEGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("CASEGATE_REQUIRE_BACKENDS") == "1"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_backend(name: str, host: str, port: int) -> None:
    if _answers(host, port):
        return
    message = f"{name} is not answering on {host}:{port}"
    if REQUIRE:
        pytest.fail(message + " (CASEGATE_REQUIRE_BACKENDS=1)")
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Secrets never reach the logs: scan every gateway's output once the suite is done."""
    yield
    leaks = []
    for log in tmp_path_factory.getbasetemp().rglob("gateway.log"):
        text = log.read_text(errors="replace")
        leaks += [f"{log}: {s[:10]}..." for s in ALL_SECRETS if s in text]
        for line in text.splitlines():
            if line.startswith(("CASEGATE_DEMO_CLIENT_KEY=", "CASEGATE_DEMO_OPERATOR_TOKEN=")):
                leaks.append(f"{log}: demo secret printed")
    assert not leaks, leaks


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[UpstreamStub]:
    with UpstreamStub() as stub:
        yield stub


@pytest.fixture
def upstream(upstream_server: UpstreamStub) -> UpstreamStub:
    upstream_server.clear()
    return upstream_server


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    need_backend("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> str:
    need_backend("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def new_key(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(18)}"


def b64key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


#: every secret any test handed to a gateway; the session ends by scanning all logs for them
ALL_SECRETS: set[str] = set()


class Credentials:
    def __init__(self) -> None:
        self.helpdesk = new_key("ck-helpdesk")
        self.triage_only = new_key("ck-triage")
        self.oncall = new_key("op-oncall")
        self.upstream = new_key("sk-upstream-secret")
        self.keys = {
            "CASEGATE_CUSTOMER_KEY": b64key(),
            "CASEGATE_DATA_KEY": b64key(),
            "CASEGATE_SIGNING_KEY": b64key(),
        }
        ALL_SECRETS.update([self.helpdesk, self.triage_only, self.oncall, self.upstream])
        ALL_SECRETS.update(self.keys.values())

    def env(self) -> dict[str, str]:
        return {
            "HELPDESK_KEY": self.helpdesk,
            "TRIAGE_KEY": self.triage_only,
            "ONCALL_TOKEN": self.oncall,
            "UPSTREAM_KEY": self.upstream,
            **self.keys,
        }


def gateway_config(
    stub_url: str,
    *,
    via: str = "openai",
    state: str = "sqlite:///casegate.db",
    keys: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    prefix = "openai/"
    config: dict[str, Any] = {
        "state": state,
        "routes": {
            "support-default": [
                {
                    "model": f"{prefix}gpt-primary",
                    "api_base": stub_url,
                    "api_key_env": "UPSTREAM_KEY",
                    "via": via,
                    "timeout_s": 5,
                },
                {
                    "model": f"{prefix}gpt-secondary",
                    "api_base": stub_url,
                    "api_key_env": "UPSTREAM_KEY",
                    "via": via,
                    "timeout_s": 5,
                },
            ]
        },
        "clients": [
            {
                "name": "helpdesk",
                "key_env": "HELPDESK_KEY",
                "use_cases": ["triage", "reply_drafting"],
            },
            {"name": "triage-bot", "key_env": "TRIAGE_KEY", "use_cases": ["triage"]},
        ],
        "operators": [
            {
                "name": "oncall",
                "token_env": "ONCALL_TOKEN",
                "roles": ["incident_responder", "auditor"],
            }
        ],
        "limits": {"max_body_bytes": 65536, "deadline_s": 8, "first_chunk_timeout_s": 3},
        "retry": {"attempts": 3, "max_retry_after_s": 2},
        # the tests script failures on purpose: no circuit unless a test asks for one
        "circuit": {"failures": 0, "cooldown_s": 1},
    }
    if keys:
        config["keys"] = {
            "customer_hash_env": "CASEGATE_CUSTOMER_KEY",
            "data_key_env": "CASEGATE_DATA_KEY",
            "signing_key_env": "CASEGATE_SIGNING_KEY",
        }
    config.update(overrides)
    return config


@pytest.fixture
def creds() -> Credentials:
    return Credentials()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item (``rep_call``): fixtures read it."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def start_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, creds: Credentials
) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any] | None, *, name: str = "gw", **kwargs: Any) -> GatewayProcess:
        env = {**creds.env(), **kwargs.pop("env", {})}
        gw = GatewayProcess.start(tmp_path / name, config, env=env, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        # the gateways' own logs (worker starts, restarts, tracebacks) with the failure
        for gw in started:
            print(f"--- {gw.log_path} (last 20,000 characters) ---\n{gw.log()[-20_000:]}")
