"""Schemathesis against /openapi.json of a real gateway: no 5xx, every error OpenAI-shaped.

A bounded number of examples per operation here; `bench/` may run more. Client paths
get the client key, operator paths an all-roles operator token, so the fuzzing reaches
past authentication.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import Credentials, gateway_config
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub

EXAMPLES = int(os.environ.get("CASEGATE_FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def fuzz_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def fuzz_gateway(
    upstream_server: UpstreamStub, fuzz_creds: Credentials, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-fuzz")
    config = gateway_config(upstream_server.url)
    config["operators"][0]["roles"] = ["admin"]
    gw = GatewayProcess.start(workdir, config, env=fuzz_creds.env())
    yield gw
    gw.stop()


def test_no_5xx_and_errors_are_openai_shaped(
    fuzz_creds: Credentials, fuzz_gateway: GatewayProcess
) -> None:
    # Schemathesis drives Hypothesis directly (its pytest plugin predates pytest 9).
    schema = schemathesis.openapi.from_url(fuzz_gateway.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            admin = case.path.startswith("/admin")
            token = fuzz_creds.oncall if admin else fuzz_creds.helpdesk
            headers = {"Authorization": f"Bearer {token}", "X-Casegate-Use-Case": "triage"}
            response = case.call(base_url=fuzz_gateway.url, headers=headers, timeout=15)
            nonlocal calls
            calls += 1
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            assert response.headers.get("x-request-id")
            if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                error = response.json()["error"]
                assert set(error) == {"message", "type", "code", "param"}

        check()
    assert calls >= len(operations) * 2  # every operation was really exercised
    print(f"{calls} calls over {len(operations)} operations")
