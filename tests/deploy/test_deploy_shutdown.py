"""Graceful shutdown: SIGTERM to a real `casegate serve` with calls in flight.

What a Kubernetes rollout or `docker compose stop` does to a replica: SIGTERM, then
CASEGATE_GRACE_S for the calls in flight. No call may be left hanging (each completes
or ends with the OpenAI-shaped error frame), no lineage record may be lost (exactly one
start and one end event per call, the chain verifies), and the process exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub
from tests.tracing.otlp_receiver import OtlpReceiver


def _body(stream: bool) -> dict[str, Any]:
    return {"model": "support-default", "messages": user("Where is my parcel?"), "stream": stream}


class StreamReader(threading.Thread):
    """Reads one SSE stream to its end in the background, keeping every line."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.lines: list[str] = []
        self.status: int | None = None
        self.lineage_id: str | None = None
        self.error: BaseException | None = None
        self.first_chunk = threading.Event()

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=30) as client,
                client.stream(
                    "POST",
                    self.url + "/v1/chat/completions",
                    json={**_body(True), **casegate()},
                    headers={"Authorization": f"Bearer {self.key}", **headers()},
                ) as resp,
            ):
                self.status = resp.status_code
                self.lineage_id = resp.headers.get("x-casegate-lineage-id")
                for line in resp.iter_lines():
                    if not line:
                        continue  # the blank line after each SSE event
                    self.lines.append(line)
                    if line.startswith("data: {"):
                        self.first_chunk.set()
        except BaseException as exc:  # recorded, asserted by the test
            self.error = exc
        finally:
            self.first_chunk.set()

    def text(self) -> str:
        out = []
        for line in self.lines:
            if line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices") or []:
                    out.append((choice.get("delta") or {}).get("content") or "")
        return "".join(out)


class CallThread(threading.Thread):
    """One non-streaming call in the background."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.response = httpx.post(
                self.url + "/v1/chat/completions",
                json={**_body(False), **casegate()},
                headers={"Authorization": f"Bearer {self.key}", **headers()},
                timeout=30,
            )
        except BaseException as exc:
            self.error = exc


def _events(gw: GatewayProcess) -> list[dict[str, Any]]:
    db = sqlite3.connect(gw.workdir / "casegate.db")
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT event FROM lineage_events")]
    finally:
        db.close()


def _assert_lineage_complete(gw: GatewayProcess, lineage_ids: list[str]) -> dict[str, Any]:
    events = _events(gw)
    kinds = Counter((e["lineage_id"], e["type"]) for e in events)
    started = {e["lineage_id"] for e in events if e["type"] == "request.started"}
    assert set(lineage_ids) <= started
    for lid in started:  # every record in the store, not only ours: none lost
        assert kinds[(lid, "request.started")] == 1, lid
        assert kinds[(lid, "request.ended")] == 1, lid
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "lineage",
            "verify",
            "--state",
            f"sqlite:///{gw.workdir / 'casegate.db'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return {e["lineage_id"]: e["data"] for e in events if e["type"] == "request.ended"}


def _start(
    tmp_path: Path,
    upstream: UpstreamStub,
    creds: Credentials,
    grace_s: int,
    **extra_env: str,
) -> GatewayProcess:
    env = {**creds.env(), "CASEGATE_GRACE_S": str(grace_s), **extra_env}
    return GatewayProcess.start(tmp_path / "gw", gateway_config(upstream.url), env=env)


def _sigterm(gw: GatewayProcess) -> None:
    os.kill(gw.proc.pid, signal.SIGTERM)


def _refuses_connections(gw: GatewayProcess) -> bool:
    """After SIGTERM the listening socket closes: new calls go to other replicas."""
    for _ in range(100):
        try:
            httpx.get(gw.url + "/healthz", timeout=1)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.05)
    return False


def test_sigterm_lets_calls_in_flight_finish(
    tmp_path: Path, upstream: UpstreamStub, creds: Credentials
) -> None:
    """Within the grace, a slow stream and a slow call both complete; exit 0."""
    grace_s = 15
    words = [f" w{i}" for i in range(12)]
    upstream.script(
        Reply.chunks(words, delay_s=0.25),  # the stream: about 3 s
        Reply.slow(Reply.text("slow answer"), 2.0),  # the non-stream call
    )
    gw = _start(tmp_path, upstream, creds, grace_s)
    try:
        stream = StreamReader(gw.url, creds.helpdesk)
        stream.start()
        assert stream.first_chunk.wait(10)
        call = CallThread(gw.url, creds.helpdesk)
        call.start()
        upstream.wait_for_requests(2)  # both calls are upstream now
        _sigterm(gw)
        assert _refuses_connections(gw)
        stream.join(30)
        call.join(30)
        code = gw.proc.wait(grace_s + 5)
    finally:
        gw.stop()
    assert code == 0, gw.log()
    assert stream.error is None and stream.status == 200, stream.error
    assert stream.text() == "".join(words)
    assert stream.lines[-1] == "data: [DONE]"
    assert not any(line.startswith("event: error") for line in stream.lines)
    assert call.error is None and call.response is not None, call.error
    assert call.response.status_code == 200, call.response.text
    assert call.response.json()["choices"][0]["message"]["content"] == "slow answer"
    ids = [stream.lineage_id, call.response.headers["x-casegate-lineage-id"]]
    assert None not in ids
    ends = _assert_lineage_complete(gw, [i for i in ids if i])
    assert [ends[i]["end"] for i in ids if i] == ["completed", "completed"]


@pytest.mark.slow
def test_sigterm_ends_calls_that_outlast_the_grace(
    tmp_path: Path, upstream: UpstreamStub, creds: Credentials
) -> None:
    """Past the grace, a stream ends with the error frame and a call gets a 503; exit 0.

    Telemetry is flushed on the way out: the batch processor's delay is far longer than
    the test, so the two calls' spans can only reach the collector through shutdown.
    """
    grace_s = 4
    upstream.script(
        Reply.chunks([f" w{i}" for i in range(60)], delay_s=0.25),  # about 15 s
        Reply.slow(Reply.text("too late"), 20.0),
    )
    receiver = OtlpReceiver().start()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    }
    gw = _start(tmp_path, upstream, creds, grace_s, **otel)
    try:
        stream = StreamReader(gw.url, creds.helpdesk)
        stream.start()
        assert stream.first_chunk.wait(10)
        call = CallThread(gw.url, creds.helpdesk)
        call.start()
        upstream.wait_for_requests(2)
        _sigterm(gw)
        stream.join(30)
        call.join(30)
        code = gw.proc.wait(grace_s + 5)
        spans = receiver.spans()
    finally:
        gw.stop()
        receiver.stop()
    assert code == 0, gw.log()
    assert "timeout graceful shutdown exceeded" not in gw.log()  # nothing left to cancel
    # the stream: some text, then the OpenAI-shaped error frame, then [DONE]
    assert stream.error is None and stream.status == 200, stream.error
    assert stream.text().startswith(" w0")
    assert stream.lines[-1] == "data: [DONE]", stream.lines[-4:]
    frames = [i for i, line in enumerate(stream.lines) if line == "event: error"]
    assert len(frames) == 1, stream.lines[-4:]
    error = json.loads(stream.lines[frames[0] + 1][6:])["error"]
    assert error["code"] == "shutting_down" and error["type"] == "server_error"
    # the non-stream call: an OpenAI-shaped 503 the client may retry on another replica
    assert call.error is None and call.response is not None, call.error
    assert call.response.status_code == 503, call.response.text
    assert call.response.json()["error"]["code"] == "shutting_down"
    ids = [stream.lineage_id, call.response.headers.get("x-casegate-lineage-id")]
    assert None not in ids
    ends = _assert_lineage_complete(gw, [i for i in ids if i])
    for lid in ids:
        assert lid is not None
        assert ends[lid]["end"] == "failed"
        assert ends[lid]["refusal"] == "shutting_down"
    # the server spans of both calls were exported by the shutdown flush
    traced = {s.attributes.get("casegate.lineage_id") for s in spans if s.kind == "SERVER"}
    assert set(ids) <= traced
