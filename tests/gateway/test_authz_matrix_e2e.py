"""The authorization matrix: every endpoint x no key / client key / each operator role.

Expected roles are written here from DESIGN.md section 4 (the contract), not read from
our own route table, and every operator path the gateway documents must be in the
matrix, so a new endpoint cannot slip in without a role decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Credentials, gateway_config, new_key
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub

ROLES = ("approver", "incident_responder", "auditor", "admin")
ANY = "any operator"

#: (method, path template, concrete path, role required) from DESIGN.md section 4
OPERATOR_ENDPOINTS = [
    ("GET", "/admin/kill-switches", "/admin/kill-switches", ANY),
    ("POST", "/admin/kill-switches", "/admin/kill-switches", "incident_responder"),
    ("DELETE", "/admin/kill-switches/{scope}", "/admin/kill-switches/global", "incident_responder"),
    ("GET", "/admin/policies", "/admin/policies", ANY),
    ("GET", "/admin/policies/{version}", "/admin/policies/none", ANY),
    ("POST", "/admin/policies", "/admin/policies", "admin"),
    ("POST", "/admin/policies/{version}/activate", "/admin/policies/none/activate", "admin"),
    ("POST", "/admin/policies/rollback", "/admin/policies/rollback", "incident_responder"),
    # not in DESIGN.md: aggregate counts of an observed version (no records), read like policies
    ("GET", "/admin/policy-observations", "/admin/policy-observations", ANY),
    ("GET", "/admin/drafts", "/admin/drafts", "approver"),
    ("POST", "/admin/drafts/{draft_id}/approve", "/admin/drafts/dft_none/approve", "approver"),
    ("POST", "/admin/drafts/{draft_id}/reject", "/admin/drafts/dft_none/reject", "approver"),
    ("GET", "/admin/lineage", "/admin/lineage", "auditor"),
    ("GET", "/admin/lineage/{id}", "/admin/lineage/lin_none", "auditor"),
    ("GET", "/admin/lineage/export", "/admin/lineage/export", "auditor"),
    ("GET", "/admin/scorecard", "/admin/scorecard", "auditor"),
    ("DELETE", "/admin/cases/{case_id}/personal-data", "/admin/cases/C-1/personal-data", "admin"),
]
CLIENT_ENDPOINTS = [
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/drafts/dft_none"),
    ("POST", "/v1/lineage/lin_none/outcome"),
]
PUBLIC_ENDPOINTS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/casegate-release-keys"),
]


class Tokens:
    def __init__(self) -> None:
        self.roles = {role: new_key(f"op-{role}") for role in ROLES}


@pytest.fixture(scope="module")
def matrix_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture(scope="module")
def gateway(
    upstream_server: UpstreamStub,
    matrix_creds: Credentials,
    tokens: Tokens,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-authz")
    config = gateway_config(upstream_server.url)
    config["operators"] = [
        {"name": f"op-{role}", "token_env": f"OP_{role.upper()}", "roles": [role]} for role in ROLES
    ]
    env = {**matrix_creds.env(), **{f"OP_{r.upper()}": t for r, t in tokens.roles.items()}}
    gw = GatewayProcess.start(workdir, config, env=env)
    yield gw
    gw.stop()


def call(gw: GatewayProcess, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"X-Casegate-Use-Case": "triage"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        method, gw.url + path, headers=headers, json={"reason": "authz matrix"}, timeout=15
    )


def test_the_matrix_covers_every_documented_operator_endpoint(gateway: GatewayProcess) -> None:
    doc = httpx.get(gateway.url + "/openapi.json").json()
    documented = {
        (m.upper(), p) for p, ops in doc["paths"].items() for m in ops if p.startswith("/admin")
    }
    assert documented == {(m, t) for m, t, _, _ in OPERATOR_ENDPOINTS}


@pytest.mark.parametrize(("method", "template", "path", "role"), OPERATOR_ENDPOINTS)
def test_operator_endpoint(
    gateway: GatewayProcess,
    matrix_creds: Credentials,
    tokens: Tokens,
    method: str,
    template: str,
    path: str,
    role: str,
) -> None:
    for token in (None, matrix_creds.helpdesk, "op-not-a-token"):
        resp = call(gateway, method, path, token)
        assert resp.status_code == 401, (token is None, resp.text)
        assert resp.json()["error"]["type"] == "authentication_error"
    for holder, token in tokens.roles.items():
        resp = call(gateway, method, path, token)
        allowed = role == ANY or holder in (role, "admin")
        if allowed:
            assert resp.status_code not in (401, 403), (holder, resp.text)
            assert resp.status_code < 500, (holder, resp.text)
        else:
            assert resp.status_code == 403, (holder, resp.status_code, resp.text)
            assert resp.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize(("method", "path"), CLIENT_ENDPOINTS)
def test_client_endpoint(
    gateway: GatewayProcess, matrix_creds: Credentials, tokens: Tokens, method: str, path: str
) -> None:
    for token in (None, tokens.roles["admin"], "ck-not-a-key"):
        resp = call(gateway, method, path, token)
        assert resp.status_code == 401, resp.text
    resp = call(gateway, method, path, matrix_creds.helpdesk)
    assert resp.status_code not in (401, 403) and resp.status_code < 500, resp.text


@pytest.mark.parametrize(("method", "path"), PUBLIC_ENDPOINTS)
def test_public_endpoint(gateway: GatewayProcess, method: str, path: str) -> None:
    assert call(gateway, method, path, None).status_code == 200
