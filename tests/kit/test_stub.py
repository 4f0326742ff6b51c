"""Tests of the upstream stub, driven by the real openai SDK and by raw aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.kit.stub import Reply, UpstreamStub

ROOT = Path(__file__).resolve().parents[2]
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamStub]:
    with UpstreamStub() as stub:
        yield stub
    # this stub's own thread is gone (other fixtures may run stubs of their own)
    assert not [t for t in threading.enumerate() if t.name == f"upstream-stub-{stub.port}"]


@pytest.fixture
def stub(upstream: UpstreamStub, caplog: pytest.LogCaptureFixture) -> Iterator[UpstreamStub]:
    upstream.clear()
    caplog.set_level(logging.WARNING, logger="aiohttp")
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield upstream
    upstream.wait_idle(timeout=3)
    noisy = [r for r in caplog.records if r.name.startswith(("aiohttp", "asyncio"))]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.fixture
def client(stub: UpstreamStub) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0, timeout=5) as c:
        yield c


async def sse_events(resp: aiohttp.ClientResponse) -> list[Any]:
    """Parse an SSE body strictly: every event is one ``data:`` line then a blank line."""
    raw = (await resp.read()).decode()
    assert raw.endswith("\n\n")
    events: list[Any] = []
    for block in raw[:-2].split("\n\n"):
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append("[DONE]" if data == "[DONE]" else json.loads(data))
    return events


# --------------------------------------------------------------------------- defaults


def test_default_reply_non_stream(stub: UpstreamStub, client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert r.object == "chat.completion"
    assert r.model == "gpt-test"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "stub reply"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (10, 5, 15)


def test_default_reply_stream_async_sdk_with_usage(stub: UpstreamStub) -> None:
    async def run() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="gpt-test",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-test" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices]
    assert [t for t in texts if t] == ["stub", " reply"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens == 15
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_wire_format(stub: UpstreamStub) -> None:
    async def run() -> tuple[str, list[Any]]:
        async with aiohttp.ClientSession() as s:
            body = {"model": "m", "messages": MESSAGES, "stream": True}
            async with s.post(f"{stub.url}/chat/completions", json=body) as resp:
                assert resp.status == 200
                return resp.headers["content-type"], await sse_events(resp)

    ctype, events = asyncio.run(run())
    assert ctype.startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": "stub"},
        {"content": " reply"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    for c in chunks:
        assert set(c) >= {"id", "object", "created", "model", "choices"}
        assert c["object"] == "chat.completion.chunk"
        assert c["choices"][0]["index"] == 0
        assert "usage" not in c  # no usage chunk unless include_usage


# --------------------------------------------------------------------------- scripting


def test_script_fifo_then_default(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.text("one"), Reply.text("two", finish_reason="length", usage=(3, 4)))
    assert stub.pending() == 2
    got = [client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(3)]
    assert [r.choices[0].message.content for r in got] == ["one", "two", "stub reply"]
    assert got[1].choices[0].finish_reason == "length"
    assert got[1].usage is not None and got[1].usage.total_tokens == 7
    assert stub.pending() == 0


def test_text_model_override_and_word_split(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.text("Hello there, friend", model="served-model"))
    chunks = list(client.chat.completions.create(model="route", messages=MESSAGES, stream=True))
    assert {c.model for c in chunks} == {"served-model"}
    deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert deltas == ["Hello", " there,", " friend"]


def test_per_model_queue_and_sticky_defaults(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.text("any"))
    stub.script(Reply.text("for-a"), model="a")
    stub.set_default(Reply.error(503, message="a is dead"), model="dead")

    def ask(model: str) -> str | None:
        return (
            client.chat.completions.create(model=model, messages=MESSAGES)
            .choices[0]
            .message.content
        )

    assert ask("a") == "for-a"  # per-model queue first
    for _ in range(2):  # sticky per-model default beats the shared queue
        with pytest.raises(openai.InternalServerError, match="a is dead"):
            ask("dead")
    assert ask("b") == "any"
    assert ask("a") == "stub reply"
    stub.set_default(Reply.text("sticky"))
    assert [ask("b"), ask("b")] == ["sticky", "sticky"]
    stub.set_default(None, model="dead")
    assert ask("dead") == "sticky"
    stub.clear()
    assert ask("b") == "stub reply"
    assert len(stub.requests) == 1


def test_script_rejects_non_reply(stub: UpstreamStub) -> None:
    with pytest.raises(TypeError):
        stub.script("nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tool calls

CALLS: list[dict[str, Any]] = [
    {"name": "lookup_order", "arguments": '{"order_id": "A-1", "note": "x y z"}', "id": "call_a"},
    {"name": "refund", "arguments": {"amount": 5}},
]


def test_tool_calls_non_stream_parallel(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.tool_calls(CALLS))
    r = client.chat.completions.create(model="m", messages=MESSAGES)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name) for c in calls] == [  # type: ignore[union-attr]
        ("call_a", "function", "lookup_order"),
        ("call_stub_1", "function", "refund"),
    ]
    assert json.loads(calls[1].function.arguments) == {"amount": 5}  # type: ignore[union-attr]


def assemble(chunks: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for tc in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                entry["id"] = tc.id
            if tc.function and tc.function.name:
                entry["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
    return calls


def test_tool_calls_stream_parallel(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.tool_calls(CALLS, fragment_size=5))
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.tool_calls is not None
    head = first.tool_calls[0]
    assert (head.index, head.id, head.type) == (0, "call_a", "function")
    assert head.function is not None
    assert (head.function.name, head.function.arguments) == ("lookup_order", "")
    # argument fragments carry neither id nor name
    frags = [c.choices[0].delta.tool_calls[0] for c in chunks[1:] if c.choices[0].delta.tool_calls]
    assert any(f.id is None and f.function is not None and f.function.name is None for f in frags)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    calls = assemble(chunks)
    assert sorted(calls) == [0, 1]
    assert calls[0] == {"id": "call_a", "name": "lookup_order", "arguments": CALLS[0]["arguments"]}
    assert calls[1]["name"] == "refund"
    assert json.loads(calls[1]["arguments"]) == {"amount": 5}


def test_chunks_exact_deltas_and_tool_fragments(stub: UpstreamStub) -> None:
    reply = Reply.chunks(
        ["Let me ", "check", "."],
        tool_calls=[
            {"name": "a", "arguments": ['{"k":', ' "v"}']},
            {"name": "b", "arguments": ["{", "}"]},
        ],
        interleave=True,
    )
    stub.script(reply, reply)

    async def run() -> tuple[list[Any], Any]:
        async with aiohttp.ClientSession() as s:
            url = f"{stub.url}/chat/completions"
            base = {"model": "m", "messages": MESSAGES}
            async with s.post(url, json={**base, "stream": True}) as resp:
                events = await sse_events(resp)
            async with s.post(url, json=base) as resp:
                return events, await resp.json()

    events, whole = asyncio.run(run())
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[:3] == [
        {"role": "assistant", "content": "Let me "},
        {"content": "check"},
        {"content": "."},
    ]
    tool_events = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [(t["index"], t.get("id"), t["function"]["arguments"]) for t in tool_events] == [
        (0, "call_stub_0", ""),
        (1, "call_stub_1", ""),
        (0, None, '{"k":'),
        (1, None, "{"),
        (0, None, ' "v"}'),
        (1, None, "}"),
    ]
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    message = whole["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"k": "v"}', "{}"]


def test_chunks_with_delay(stub: UpstreamStub) -> None:
    stub.script(Reply.chunks(["a", "b"], delay_s=0.1))

    async def run() -> list[float]:
        async with aiohttp.ClientSession() as s:
            body = {"model": "m", "messages": MESSAGES, "stream": True}
            async with s.post(f"{stub.url}/chat/completions", json=body) as resp:
                stamps = []
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        stamps.append(time.monotonic())
                return stamps

    stamps = asyncio.run(run())
    assert len(stamps) == 4  # a, b, finish, [DONE]
    assert stamps[1] - stamps[0] >= 0.08


# --------------------------------------------------------------------------- failures


def test_error_with_retry_after(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(
        Reply.error(429, code="rate_limit_exceeded", message="slow down", retry_after=2),
        Reply.error(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        Reply.error(400, code="context_length_exceeded", message="too long"),
    )
    with pytest.raises(openai.RateLimitError) as rate:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert rate.value.status_code == 429
    assert rate.value.response.headers["retry-after"] == "2"
    assert rate.value.code == "rate_limit_exceeded"
    assert rate.value.body == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert unavailable.value.response.headers["retry-after"].startswith("Wed,")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert bad.value.code == "context_length_exceeded"
    assert len(stub.requests) == 3  # max_retries=0: no SDK retries


def test_error_custom_body_and_headers(stub: UpstreamStub) -> None:
    stub.script(Reply.error(502, body=b"<html>bad gateway</html>", headers={"X-Foo": "1"}))

    async def run() -> tuple[int, str, bytes]:
        async with aiohttp.ClientSession() as s:
            body = {"model": "m", "messages": MESSAGES}
            async with s.post(f"{stub.url}/chat/completions", json=body) as resp:
                return resp.status, resp.headers["x-foo"], await resp.read()

    assert asyncio.run(run()) == (502, "1", b"<html>bad gateway</html>")


def test_malformed(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.malformed(), Reply.malformed())
    with pytest.raises(ValueError):  # json.JSONDecodeError
        client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(ValueError):
        list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))


def test_reset(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.reset())
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    # the stub keeps serving new connections
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content


def test_reset_raw_aiohttp(stub: UpstreamStub) -> None:
    stub.script(Reply.reset())

    async def run() -> None:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await s.post(f"{stub.url}/chat/completions", json={"model": "m"})

    asyncio.run(run())


def test_stream_cut(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(Reply.stream_cut(after_chunks=1))
    got: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            got.append(chunk.choices[0].delta.content)
    assert got == ["stub"]


def test_stream_cut_raw_and_non_stream(stub: UpstreamStub) -> None:
    custom = Reply.chunks(["a", "b", "c"])
    stub.script(Reply.stream_cut(after_chunks=2, reply=custom), Reply.stream_cut())

    async def run() -> tuple[bytes, type[BaseException]]:
        received = b""
        async with aiohttp.ClientSession() as s:
            url = f"{stub.url}/chat/completions"
            async with s.post(url, json={"model": "m", "stream": True}) as resp:
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for data in resp.content.iter_any():
                        received += data
            async with s.post(url, json={"model": "m"}) as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError) as err:
                    await resp.read()
        return received, err.type

    received, _ = asyncio.run(run())
    assert received.count(b"data: ") == 2
    assert b'"content":"b"' in received and b"[DONE]" not in received


def test_stream_error_in_band(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.script(
        Reply.stream_error(1, code="overloaded", message="boom"),
        Reply.stream_error(status=529, message="busy"),
    )
    got: list[str | None] = []
    with pytest.raises(openai.APIError, match="boom"):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            got.append(chunk.choices[0].delta.content)
    assert got == ["stub"]
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert err.value.status_code == 529


def test_stream_stall_client_timeout(stub: UpstreamStub) -> None:
    stub.script(Reply.stream_stall(after_chunks=2))
    got: list[str | None] = []
    with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0, timeout=0.3) as c:
        with pytest.raises(openai.APITimeoutError):
            for chunk in c.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                got.append(chunk.choices[0].delta.content)
    assert got == ["stub", " reply"]
    stub.wait_idle(timeout=2)  # the stalled handler ended once the client left


def test_hang_and_slow(stub: UpstreamStub) -> None:
    stub.script(Reply.hang(), Reply.slow(Reply.text("late"), 0.2))
    with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0, timeout=0.2) as c:
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="m", messages=MESSAGES)
        start = time.monotonic()
        r = c.chat.completions.create(model="m", messages=MESSAGES, timeout=2)
    assert r.choices[0].message.content == "late"
    assert time.monotonic() - start >= 0.18


def test_slow_first_chunk_sends_headers_first(stub: UpstreamStub) -> None:
    stub.script(Reply.slow_first_chunk(Reply.text("x y"), 0.25))

    async def run() -> tuple[float, float]:
        async with aiohttp.ClientSession() as s:
            start = time.monotonic()
            body = {"model": "m", "stream": True}
            async with s.post(f"{stub.url}/chat/completions", json=body) as resp:
                headers_at = time.monotonic() - start
                await resp.content.readline()
                return headers_at, time.monotonic() - start

    headers_at, first_at = asyncio.run(run())
    assert headers_at < 0.2 <= first_at


# --------------------------------------------------------------------------- records & misc


def test_records(stub: UpstreamStub, client: openai.OpenAI) -> None:
    before = time.monotonic()
    client.chat.completions.create(
        model="gpt-rec",
        messages=MESSAGES,
        temperature=0.5,
        extra_headers={"X-Trace-Me": "yes"},
    )
    (rec,) = stub.wait_for_requests(1)
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.headers["authorization"] == "Bearer x"
    assert rec.headers["x-trace-me"] == "yes"
    assert all(name == name.lower() for name in rec.headers)
    assert rec.json == {"model": "gpt-rec", "messages": MESSAGES, "temperature": 0.5}
    assert json.loads(rec.body) == rec.json
    assert rec.model == "gpt-rec" and not rec.stream
    assert before <= rec.at <= time.monotonic()
    assert stub.last == rec and stub.chat_requests == [rec]


def test_wait_for_requests_from_other_thread_and_async(stub: UpstreamStub) -> None:
    def later() -> None:
        time.sleep(0.05)
        with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as c:
            c.chat.completions.create(model="m", messages=MESSAGES)
            c.models.list()

    thread = threading.Thread(target=later)
    thread.start()
    assert len(stub.wait_for_requests(1, path="/v1/chat/completions")) == 1
    got = asyncio.run(stub.wait_for_requests_async(2))
    thread.join()
    assert [r.path for r in got] == ["/v1/chat/completions", "/v1/models"]
    with pytest.raises(TimeoutError):
        stub.wait_for_requests(3, timeout=0.05)


def test_models_and_unknown_paths(stub: UpstreamStub, client: openai.OpenAI) -> None:
    stub.set_default(Reply.text("x"), model="special")
    ids = [m.id for m in client.models.list()]
    assert ids == ["stub-model", "special"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="e", input="hi")
    assert stub.requests[-1].path == "/v1/embeddings"


def test_bad_request_body(stub: UpstreamStub) -> None:
    async def run() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{stub.url}/chat/completions", data=b"{nope") as resp:
                return resp.status, await resp.json()

    status, body = asyncio.run(run())
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert stub.last.json is None and stub.last.body == b"{nope"


def test_stop_cancels_hung_handlers() -> None:
    stub = UpstreamStub().start()
    assert stub.url == f"http://127.0.0.1:{stub.port}/v1" and stub.base + "/v1" == stub.url
    stub.script(Reply.hang(), Reply.stream_stall(1))
    errors: list[BaseException] = []

    def call(stream: bool) -> None:
        with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0, timeout=10) as c:
            try:
                list(c.chat.completions.create(model="m", messages=MESSAGES, stream=stream))
            except openai.APIError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=call, args=(s,)) for s in (False, True)]
    for t in threads:
        t.start()
    stub.wait_for_requests(2)
    deadline = time.monotonic() + 2
    while stub.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    stub.stop()
    assert time.monotonic() - start < 3
    for t in threads:
        t.join(timeout=5)
    assert len(errors) == 2
    assert not stub.running
    stub.stop()  # idempotent


def test_cli_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kit.stub", "--port", "0", "--latency-ms", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=5) as c:
            r = c.chat.completions.create(model="bench", messages=MESSAGES)
        assert r.choices[0].message.content == "stub reply"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
        if proc.stdout is not None:
            proc.stdout.close()
