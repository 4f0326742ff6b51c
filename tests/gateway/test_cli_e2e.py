"""`casegate serve` on its embedded default, config errors, `config check`, migrations."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.conftest import gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def test_serve_with_no_arguments_answers_from_the_demo_route(tmp_path: Path) -> None:
    gw = GatewayProcess.start(tmp_path, None)
    try:
        env_file = tmp_path / "casegate-demo.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "casegate.keys.json").stat().st_mode) == 0o600
        assert str(env_file) in gw.log()
        creds = read_env(env_file)
        client = openai.OpenAI(
            base_url=gw.url + "/v1", api_key=creds["CASEGATE_DEMO_CLIENT_KEY"], max_retries=0
        )
        done = client.chat.completions.create(
            model="support-default",
            messages=user("Where is my order?"),
            extra_headers=headers(),
            extra_body=casegate(),
        )
        assert "offline demo route" in (done.choices[0].message.content or "")
        assert (done.model_extra or {})["casegate"]["decision"] == "allowed"
        stream = client.chat.completions.create(
            model="support-default",
            messages=user("hi"),
            stream=True,
            extra_headers=headers("reply_drafting"),
            extra_body=casegate(context={"product_id": "P-1"}),
        )
        assert "offline demo" in "".join(
            c.choices[0].delta.content or "" for c in stream if c.choices
        )
        keys_before = (tmp_path / "casegate.keys.json").read_text()
    finally:
        gw.stop()
    # a restart keeps the demo credentials and the keys (customer_ref must never change)
    gw = GatewayProcess.start(tmp_path, None)
    try:
        assert read_env(tmp_path / "casegate-demo.env") == creds
        assert (tmp_path / "casegate.keys.json").read_text() == keys_before
        client = openai.OpenAI(
            base_url=gw.url + "/v1", api_key=creds["CASEGATE_DEMO_CLIENT_KEY"], max_retries=0
        )
        assert [m.id for m in client.models.list()] == ["support-default"]
    finally:
        gw.stop()


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CASEGATE_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(unknown_key=1), "unknown_key: unknown key"),
        (
            lambda c: c.update(budgets={"clients": {"nobody": {"requests_per_minute": 1}}}),
            "budgets.clients.nobody: no such client",
        ),
        (
            lambda c: c.update(budgets={"use_cases": {"triage": {"spend_per_day": 5}}}),
            "budgets.prices: spend caps need a price",
        ),
        (lambda c: c["limits"].update(deadline_s="soon"), "limits.deadline_s:"),
        (
            lambda c: c["routes"]["support-default"][0].update(via="carrier-pigeon"),
            "routes.support-default[0].via:",
        ),
        (
            lambda c: c["clients"][0].update(key_env="NOT_SET_ANYWHERE"),
            "clients[0].key_env: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            lambda c: c["clients"][0].update(use_cases=["triage", "billing_magic"]),
            "clients[0].use_cases:",
        ),
        (
            lambda c: c.update(routes={"other": c["routes"]["support-default"]}),
            "needs route 'support-default'",
        ),
        (
            lambda c: c.update(state="postgresql://127.0.0.1:1/none"),
            "keys: required with PostgreSQL",
        ),
        (
            lambda c: c.update(consent_service={"url": "ftp://127.0.0.1:9/consent"}),
            "consent_service.url: must be an http(s) URL",
        ),
        (
            lambda c: c.update(
                consent_service={"url": "http://127.0.0.1:9/c", "api_key_env": "NO_CONSENT_KEY"}
            ),
            "consent_service.api_key_env: environment variable NO_CONSENT_KEY is not set",
        ),
    ],
)
def test_config_errors_name_file_and_path_and_exit_nonzero(
    tmp_path: Path, creds: Any, mutate: Any, expected: str
) -> None:
    config = gateway_config("http://127.0.0.1:9/v1")
    mutate(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    for args in (("config", "check", str(path)), ("serve", "--config", str(path), "--port", "1")):
        result = run_cli(*args, cwd=tmp_path, env=creds.env())
        assert result.returncode == 2, result.stdout + result.stderr
        assert str(path) in result.stderr
        assert expected in result.stderr


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("state: sqlite:///x.db\nroutes: [\n")
    result = run_cli("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}: line" in result.stderr


def test_config_check_accepts_a_good_file(
    tmp_path: Path, creds: Any, upstream: UpstreamStub
) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(gateway_config(upstream.url)))
    result = run_cli("config", "check", str(path), cwd=tmp_path, env=creds.env())
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_embedded_default_refuses_a_public_bind(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "127.0.0.1 only" in result.stderr


@pytest.mark.postgres
def test_concurrent_migrations_apply_once(tmp_path: Path, pg_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "migrate", "--state", pg_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    from gateway.stores.migrations import MIGRATIONS

    every = sorted(v for v, _ in MIGRATIONS["postgres"])
    assert sum(f"applied {every}" in o for o, _ in outs) == 1
    assert sum("up to date" in o for o, _ in outs) == 3


def test_policy_apply_takes_the_designs_arguments() -> None:
    """DESIGN.md section 5: `casegate policy apply FILE [--observe]` (a reason is optional)."""
    from gateway.cli import build_parser

    args = build_parser().parse_args(["policy", "apply", "bundle.yaml", "--observe"])
    assert args.file == "bundle.yaml" and args.observe and args.reason is None
