"""End to end: the OpenAI SDK -> a real `casegate serve` -> the upstream stub, on both paths.

Each provider path (`via: openai`, the gateway's own aiohttp client, and `via: litellm`)
runs the same tests against the same stub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import CONTEXT, SET_PRIORITY, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub


@pytest.fixture(scope="module", params=["openai", "litellm"])
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def gateway(
    via: str,
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp(f"gw-{via}")
    gw = GatewayProcess.start(
        workdir, gateway_config(upstream_server.url, via=via), env=module_creds.env()
    )
    yield gw
    gw.stop()


@pytest.fixture
def client(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=module_creds.helpdesk, max_retries=0, timeout=20
    )


def test_non_streaming_completion_is_governed_and_labelled(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="support-default",
        messages=user("My parcel is late"),
        extra_headers=headers(case_id="CASE-1"),
        extra_body=casegate(context={**CONTEXT, "email": "x@example.com", "language": "en"}),
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "stub reply"
    assert completion.model == "gpt-primary"  # the deployment's model, no provider prefix
    extra = completion.model_extra or {}
    meta = extra["casegate"]
    assert meta["route"] == "support-default"
    assert meta["decision"] == "allowed"
    assert meta["action_class_requested"] == meta["action_class_applied"] == "recommendation"
    assert sorted(meta["fields"]["used"]) == ["account_status", "language", "product_id"]
    assert meta["fields"]["stripped"] == ["email"]
    assert raw.headers["x-casegate-lineage-id"] == meta["lineage_id"]
    assert raw.headers["x-casegate-decision"] == "allowed"
    assert raw.headers["x-request-id"]


def test_upstream_receives_only_the_allowlist(
    client: openai.OpenAI, upstream: UpstreamStub, module_creds: Credentials
) -> None:
    client.chat.completions.create(
        model="support-default",
        messages=[{"role": "system", "content": "You triage."}, *user("Hello")],
        temperature=0.2,
        user="end-user-77",
        metadata={"k": "v"},
        store=True,
        extra_headers=headers(case_id="CASE-2", customer_id="cust-secret-id", queue="billing"),
        extra_body=casegate(),
    )
    (req,) = upstream.chat_requests
    body = req.json
    assert body["model"] == "gpt-primary"
    assert "casegate" not in body
    for dropped in ("user", "metadata", "store"):
        assert dropped not in body
    assert set(body) <= {
        "model",
        "messages",
        "temperature",
        "stream",
        "stream_options",
        "max_tokens",
    }
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 800  # the bundle's cap on triage
    # the kept context rides as one system message after the leading system messages
    assert body["messages"][0] == {"role": "system", "content": "You triage."}
    assert (
        body["messages"][1]["content"]
        == 'Case context (JSON): {"account_status":"active","product_id":"P-100"}'
    )
    assert body["messages"][2]["content"] == "Hello"
    assert not [h for h in req.headers if h.startswith("x-casegate")]
    raw = req.body.decode() + repr(req.headers)
    assert module_creds.helpdesk not in raw
    assert "cust-secret-id" not in raw
    assert req.headers["authorization"] == f"Bearer {module_creds.upstream}"


def test_streaming_completion_with_usage(client: openai.OpenAI, upstream: UpstreamStub) -> None:
    upstream.script(Reply.chunks(["Hel", "lo ", "agent"]))
    stream = client.chat.completions.create(
        model="support-default",
        messages=user("hi"),
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers(),
        extra_body=casegate(),
    )
    text = ""
    finals = []
    usage = None
    for chunk in stream:
        extra = chunk.model_extra or {}
        if "casegate" in extra:
            finals.append(extra["casegate"])
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
        assert chunk.model == "gpt-primary"
    assert text == "Hello agent"
    assert usage is not None and usage.total_tokens == 15
    assert len(finals) == 2  # on the finish chunk and on the usage chunk
    assert finals[0]["decision"] == "allowed"


def test_tool_calls_pass_when_allowlisted(client: openai.OpenAI, upstream: UpstreamStub) -> None:
    upstream.script(
        Reply.tool_calls(
            [
                {"name": "set_priority", "arguments": '{"priority": "P2"}'},
                {"name": "route_to_queue", "arguments": '{"queue": "billing"}'},
            ]
        )
    )
    completion = client.chat.completions.create(
        model="support-default",
        messages=user("urgent refund"),
        tools=[SET_PRIORITY],
        extra_headers=headers(action_class="automation"),
        extra_body=casegate(),
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["set_priority", "route_to_queue"]
    assert calls[0].function.arguments == '{"priority": "P2"}'
    assert (completion.model_extra or {})["casegate"]["tool_calls_blocked"] == []
    (req,) = upstream.chat_requests
    assert [t["function"]["name"] for t in req.json["tools"]] == ["set_priority"]


def test_streamed_parallel_tool_calls_arrive_whole(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    upstream.script(
        Reply.tool_calls(
            [
                {"name": "set_priority", "arguments": '{"priority": "P3"}'},
                {"name": "route_to_queue", "arguments": '{"queue": "shipping"}'},
            ],
            fragment_size=3,
            interleave=True,
        )
    )
    stream = client.chat.completions.create(
        model="support-default",
        messages=user("x"),
        tools=[SET_PRIORITY],
        stream=True,
        extra_headers=headers(action_class="automation"),
        extra_body=casegate(),
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "args": ""})
                entry["name"] += (tc.function.name or "") if tc.function else ""
                entry["args"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls == {
        0: {"name": "set_priority", "args": '{"priority": "P3"}'},
        1: {"name": "route_to_queue", "args": '{"queue": "shipping"}'},
    }


def test_async_client(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=module_creds.helpdesk, max_retries=0
        )
        try:
            results = await asyncio.gather(
                *[
                    client.chat.completions.create(
                        model="support-default",
                        messages=user(f"q{i}"),
                        extra_headers=headers(),
                        extra_body=casegate(),
                    )
                    for i in range(5)
                ]
            )
            return [r.choices[0].message.content or "" for r in results]
        finally:
            await client.close()

    assert asyncio.run(run()) == ["stub reply"] * 5


def test_429_then_success_is_retried_transparently(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    upstream.script(
        Reply.error(429, retry_after=0.2, message="slow down"), Reply.text("after retry")
    )
    completion = client.chat.completions.create(
        model="support-default", messages=user("x"), extra_headers=headers(), extra_body=casegate()
    )
    assert completion.choices[0].message.content == "after retry"
    reqs = upstream.chat_requests
    assert [r.json["model"] for r in reqs] == ["gpt-primary", "gpt-primary"]
    assert reqs[1].at - reqs[0].at >= 0.19  # Retry-After honoured


def test_dead_primary_falls_back_to_secondary(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    upstream.set_default(Reply.error(503, message="down"), model="gpt-primary")
    completion = client.chat.completions.create(
        model="support-default", messages=user("x"), extra_headers=headers(), extra_body=casegate()
    )
    assert completion.model == "gpt-secondary"
    models = [r.json["model"] for r in upstream.chat_requests]
    assert models == ["gpt-primary"] * 3 + ["gpt-secondary"]


def test_all_deployments_dead_is_502_within_the_deadline(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    upstream.set_default(
        Reply.error(500, message="boom at https://internal.example/v1 key sk-abcdefghijklmnop")
    )
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="support-default",
            messages=user("x"),
            extra_headers=headers(),
            extra_body=casegate(),
        )
    assert time.monotonic() - started < 8
    err = info.value
    assert err.status_code == 502
    assert err.code == "upstream_error"
    assert err.response.headers["x-should-retry"] == "false"
    assert err.response.headers["x-casegate-decision"] == "allowed"
    assert "internal.example" not in err.message and "sk-abc" not in err.message


def test_timeouts_everywhere_give_504(client: openai.OpenAI, upstream: UpstreamStub) -> None:
    upstream.set_default(Reply.hang())
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="support-default",
            messages=user("x"),
            extra_headers=headers(),
            extra_body=casegate(),
        )
    assert info.value.status_code == 504
    assert info.value.code == "upstream_timeout"
    assert time.monotonic() - started < 8 + 2  # the configured deadline, plus slack


def test_provider_4xx_is_returned_sanitised_not_retried(
    client: openai.OpenAI, upstream: UpstreamStub
) -> None:
    upstream.script(
        Reply.error(
            400,
            code="context_length_exceeded",
            message="Too long for https://api.vendor.example/v1 (Bearer abc.def)",
        )
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="support-default",
            messages=user("x"),
            extra_headers=headers(),
            extra_body=casegate(),
        )
    assert info.value.code == "context_length_exceeded"
    assert "vendor.example" not in info.value.message and "abc.def" not in info.value.message
    assert len(upstream.chat_requests) == 1


def test_stream_cut_after_first_byte_ends_with_error_frame(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.stream_cut(after_chunks=2, reply=Reply.chunks(["a", "b", "c", "d"])))
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers()},
        json={"model": "support-default", "messages": user("x"), "stream": True, **casegate()},
        timeout=15,
    ) as resp:
        text = resp.read().decode()
    assert resp.status_code == 200
    assert "event: error" in text and '"upstream_error"' in text
    assert text.rstrip().endswith("data: [DONE]")
    assert len(upstream.chat_requests) == 1  # no retry after the first byte
