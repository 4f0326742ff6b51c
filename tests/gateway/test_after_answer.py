"""Telemetry that no byte of an answer waits for runs once the answer is sent
(`gateway.pipeline.After`): after the last byte, even when sending failed, and a failure
in it is logged without touching the answer or the rest of the queue."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from gateway.api import _Answer
from gateway.pipeline import run_after


class _Span:
    """Records when it ended, among the answer's messages."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def end(self, http_status: int | None = None) -> None:
        self.order.append(f"span ended {http_status}")


async def _serve(answer: _Answer, send: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    await answer({"type": "http"}, receive, send)


def test_the_queue_runs_after_the_last_byte_and_before_the_span_ends() -> None:
    order: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        order.append(message["type"])

    answer = _Answer(
        {"id": "chatcmpl-1"},
        {"X-Casegate-Lineage-Id": "lin_1"},
        [lambda: order.append("metrics"), lambda: order.append("attempt span")],
        _Span(order),
    )
    asyncio.run(_serve(answer, send))
    assert order == [
        "http.response.start",
        "http.response.body",
        "metrics",
        "attempt span",
        "span ended 200",
    ]
    assert orjson.loads(answer.body) == {"id": "chatcmpl-1"}


def test_the_queue_runs_when_the_answer_cannot_be_sent() -> None:
    order: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    answer = _Answer({}, {}, [lambda: order.append("metrics")], _Span(order))
    with pytest.raises(OSError):
        asyncio.run(_serve(answer, send))
    assert order == ["metrics", "span ended 200"]


def test_a_failing_item_is_logged_and_the_rest_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("exporter bug")

    with caplog.at_level(logging.ERROR, logger="casegate.pipeline"):
        run_after([broken, lambda: ran.append("next")])
    assert ran == ["next"]
    assert "telemetry after the answer failed" in caplog.text
    run_after(None)  # a queue that already ran


def test_an_answer_without_a_queue_still_ends_its_span() -> None:
    order: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        order.append(message["type"])

    asyncio.run(_serve(_Answer({}, {}, None, _Span(order)), send))
    assert order == ["http.response.start", "http.response.body", "span ended 200"]
