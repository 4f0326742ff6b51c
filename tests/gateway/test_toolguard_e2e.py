"""Returned tool calls are judged against the allowlist, streaming and not, on both verdicts.

`downgrade` (the shipped triage bundle): violating calls are removed, the answer becomes a
recommendation. `block`: 403 `tool_call_blocked`, or an error frame in a stream. Either
way no fragment of a violating call reaches the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from policies import default_bundle_path
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import SET_PRIORITY, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

GOOD = {"name": "set_priority", "arguments": '{"priority": "P2"}'}
BAD_CALLS = {
    "unlisted tool": [{"name": "delete_account", "arguments": "{}"}],
    # a Cyrillic letter in place of the Latin i
    "look-alike name": [{"name": "set_pr\u0456ority", "arguments": '{"priority": "P2"}'}],
    "case differs": [{"name": "Set_Priority", "arguments": '{"priority": "P2"}'}],
    "out of constraint": [{"name": "set_priority", "arguments": '{"priority": "P0"}'}],
    "extra key": [{"name": "set_priority", "arguments": '{"priority": "P2", "refund": 500}'}],
    "not json": [{"name": "set_priority", "arguments": "priority=P2"}],
    "one bad among good": [
        GOOD,
        {"name": "route_to_queue", "arguments": '{"queue": "legal"}'},
        GOOD,
    ],
}


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module", params=["downgrade", "block"])
def verdict(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def gateway(
    verdict: str,
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp(f"gw-tools-{verdict}")
    bundle = (
        default_bundle_path()
        .read_text()
        .replace("on_violation: downgrade", f"on_violation: {verdict}")
    )
    assert f"on_violation: {verdict}" in bundle
    (workdir / "bundle.yaml").write_text(bundle)
    config = gateway_config(upstream_server.url, policy_bundle="bundle.yaml")
    gw = GatewayProcess.start(workdir, config, env=module_creds.env())
    yield gw
    gw.stop()


def request(gw: GatewayProcess, creds: Credentials, stream: bool) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers(action_class="automation")},
        json={
            "model": "support-default",
            "messages": user("x"),
            "tools": [SET_PRIORITY],
            "stream": stream,
            **casegate(),
        },
        timeout=15,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_violations_are_stopped(
    gateway: GatewayProcess,
    module_creds: Credentials,
    upstream: UpstreamStub,
    verdict: str,
    case: str,
    stream: bool,
) -> None:
    calls = BAD_CALLS[case]
    upstream.script(Reply.tool_calls(calls, fragment_size=4))
    resp = request(gateway, module_creds, stream)
    text = resp.text
    # no fragment of any call's arguments and no violating name reaches the client
    for call in calls:
        if call is not GOOD and call["arguments"] != "{}":
            assert call["arguments"] not in text
    for marker in ('"P0"', "refund", "legal", "priority=P2"):
        assert marker not in text.split('"tool_calls_blocked"')[0]
    if verdict == "block":
        if stream:
            assert resp.status_code == 200
            assert "event: error" in text and '"tool_call_blocked"' in text
            assert text.rstrip().endswith("data: [DONE]")
            assert '"tool_calls"' not in text.split("event: error")[0]
        else:
            assert resp.status_code == 403
            assert resp.json()["error"]["code"] == "tool_call_blocked"
            assert resp.headers.get("x-should-retry") != "true"
        return
    assert resp.status_code == 200
    if stream:
        assert '"tool_calls"' not in text.replace('"tool_calls_blocked"', "")
        final = next(line for line in text.splitlines() if '"casegate"' in line)
        assert '"decision":"degraded"' in final
        assert '"action_class_applied":"recommendation"' in final
    else:
        body: dict[str, Any] = resp.json()
        message = body["choices"][0]["message"]
        assert not message.get("tool_calls")
        assert body["choices"][0]["finish_reason"] == "stop"
        meta = body["casegate"]
        assert meta["decision"] == "degraded"
        assert meta["action_class_applied"] == "recommendation"
        assert meta["tool_calls_blocked"]
        assert "approval" not in meta  # a downgrade never becomes a stored draft


def test_allowlisted_calls_pass_unchanged(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    client = openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=module_creds.helpdesk, max_retries=0
    )
    upstream.script(
        Reply.tool_calls(
            [GOOD, {"name": "route_to_queue", "arguments": '{"queue": "billing", "note": "vip"}'}]
        )
    )
    done = client.chat.completions.create(
        model="support-default",
        messages=user("x"),
        tools=[SET_PRIORITY],
        extra_headers=headers(action_class="automation"),
        extra_body=casegate(),
    )
    calls = done.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("set_priority", '{"priority": "P2"}'),
        ("route_to_queue", '{"queue": "billing", "note": "vip"}'),
    ]
    assert (done.model_extra or {})["casegate"]["decision"] == "allowed"


def test_tools_never_go_upstream_for_a_recommendation(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.tool_calls([GOOD]))
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers()},
        json={
            "model": "support-default",
            "messages": user("x"),
            "tools": [SET_PRIORITY],
            "tool_choice": {"type": "function", "function": {"name": "set_priority"}},
            **casegate(),
        },
    )
    (req,) = upstream.chat_requests
    assert "tools" not in req.json and "tool_choice" not in req.json
    # a call returned anyway under a class that sends no tools is a violation
    assert resp.status_code in (200, 403)
    if resp.status_code == 200:
        assert not resp.json()["choices"][0]["message"].get("tool_calls")
