"""Every error code of the client API that the foundation answers, through the OpenAI SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import CONTEXT, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def gateway(
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-errors")
    gw = GatewayProcess.start(workdir, gateway_config(upstream_server.url), env=module_creds.env())
    yield gw
    gw.stop()


@pytest.fixture
def client(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=module_creds.helpdesk, max_retries=0)


def call(
    client: openai.OpenAI,
    *,
    model: str = "support-default",
    hdrs: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    return client.chat.completions.create(
        model=model,
        messages=kwargs.pop("messages", user("x")),
        extra_headers=headers() if hdrs is None else hdrs,
        extra_body=casegate() if body is None else body,
        **kwargs,
    )


def test_missing_or_unknown_key_is_401(gateway: GatewayProcess, upstream: UpstreamStub) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        call(bad)
    assert info.value.code == "invalid_api_key"
    assert (
        "x-casegate-lineage-id" not in info.value.response.headers
    )  # not authenticated: no record
    assert info.value.response.headers["x-request-id"]
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    assert upstream.chat_requests == []


@pytest.mark.parametrize(
    ("hdrs", "param"),
    [
        ({}, "X-Casegate-Use-Case"),
        (headers(action_class="autopilot"), "X-Casegate-Action-Class"),
        (headers(case_id="x" * 129), "X-Casegate-Case-Id"),
        (headers(case_id="tab\there"), "X-Casegate-Case-Id"),
        (headers(dry_run="maybe"), "X-Casegate-Dry-Run"),
    ],
)
def test_bad_governance_headers_are_400_naming_the_header(
    client: openai.OpenAI, hdrs: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        call(client, hdrs=hdrs)
    assert info.value.code == "invalid_request"
    assert info.value.param == param
    assert info.value.response.headers["x-casegate-decision"] == "refused"
    assert info.value.response.headers["x-casegate-lineage-id"].startswith("lin_")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"casegate": {"customer": {"vip": True}}}, "casegate.customer.vip"),
        ({"casegate": {"surprise": 1}}, "casegate.surprise"),
    ],
)
def test_forbidden_fields_are_400_naming_them(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    body = {**casegate(), **extra}
    with pytest.raises(openai.BadRequestError) as info:
        call(client, body=body)
    assert info.value.param == param


def test_malformed_json_is_400(gateway: GatewayProcess, module_creds: Credentials) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers()},
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == {
        "message": "The request body is not valid JSON",
        "type": "invalid_request_error",
        "code": "invalid_request",
        "param": None,
    }


def test_use_case_not_permitted_is_403(gateway: GatewayProcess, module_creds: Credentials) -> None:
    triage_only = openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=module_creds.triage_only, max_retries=0
    )
    for use_case in ("reply_drafting", "no_such_use_case"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            call(triage_only, hdrs=headers(use_case))
        assert info.value.code == "use_case_not_permitted"


def test_action_class_the_use_case_lacks_is_403(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        call(client, hdrs=headers("reply_drafting", action_class="automation"))
    assert info.value.code == "action_class_not_permitted"


def test_ineligible_customer_is_403_naming_the_rule(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    no_consent = {"authenticated": True, "consent": {"ai_assist": False}, "region": "GB"}
    with pytest.raises(openai.PermissionDeniedError) as info:
        call(client, body=casegate(customer=no_consent))
    assert info.value.code == "ineligible"
    assert info.value.param == "ai-assist-consent"
    wrong_region = {"authenticated": True, "consent": {"ai_assist": True}, "region": "FR"}
    with pytest.raises(openai.PermissionDeniedError) as info:
        call(client, body=casegate(customer=wrong_region))
    assert info.value.param == "customer.region"
    assert upstream.chat_requests == []


def test_unknown_route_is_404_and_another_use_cases_route_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        call(client, model="gpt-4o")
    assert info.value.code == "model_not_found"


def test_required_context_field_missing_is_422(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        call(client, body=casegate(context={"product_id": "P-1"}))
    assert info.value.code == "required_field_missing"
    assert info.value.param == "casegate.context.account_status"
    with pytest.raises(openai.UnprocessableEntityError):
        call(
            client, body={"casegate": {"customer": casegate()["casegate"]["customer"]}}
        )  # no context at all
    assert upstream.chat_requests == []


def test_body_over_the_limit_is_413(gateway: GatewayProcess, module_creds: Credentials) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "support-default", "messages": user("x" * 70_000), **casegate()},
        headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers()},
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    # still an authenticated call: it has its record and the lineage headers
    assert resp.headers["x-casegate-decision"] == "refused"
    assert resp.headers["x-casegate-lineage-id"].startswith("lin_")


def test_non_text_content_is_400_unless_allowed(client: openai.OpenAI) -> None:
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]}]
    with pytest.raises(openai.BadRequestError) as info:
        call(client, messages=image)
    assert info.value.param == "messages[0].content[0].type"


@pytest.mark.parametrize(
    "path", ["/v1/embeddings", "/v1/responses", "/v1/completions", "/v1/audio/speech"]
)
def test_unsupported_openai_paths_are_404_not_supported(gateway: GatewayProcess, path: str) -> None:
    resp = httpx.post(gateway.url + path, json={})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_supported"
    assert resp.headers["x-request-id"]


def test_models_lists_the_routes_the_key_may_use(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["support-default"]


def test_dry_run_answers_without_calling_the_provider(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={
            "model": "support-default",
            "messages": user("mail me at a@b.example"),
            **casegate(context={**CONTEXT, "email": "a@b.example"}),
        },
        headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers(dry_run="true")},
    )
    assert resp.status_code == 200
    meta = resp.json()["casegate"]
    assert meta["dry_run"] is True
    assert meta["fields"]["stripped"] == ["email"]
    assert meta["redactions"] == {"EMAIL": 1}
    assert "choices" not in resp.json()
    assert upstream.chat_requests == []


def test_request_id_is_echoed_when_sane(gateway: GatewayProcess) -> None:
    assert (
        httpx.get(gateway.url + "/healthz", headers={"X-Request-Id": "abc-123"}).headers[
            "x-request-id"
        ]
        == "abc-123"
    )
    assert (
        httpx.get(gateway.url + "/healthz", headers={"X-Request-Id": "bad id <script>"})
        .headers["x-request-id"]
        .startswith("req_")
    )
