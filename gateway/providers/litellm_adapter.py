"""Deployments that are not OpenAI-wire go through litellm, imported on first use.

Usage::

    adapter = LitellmAdapter()
    reply = await adapter.complete(dep, body, timeout_s=30)

``import litellm`` costs about two seconds and 200 MB, so it happens only when a
route needs it (see ``Router.warm_up``). litellm's own retries are switched off
(``num_retries=0``, ``max_retries=0``): exactly one layer retries, ours. Its
exceptions are mapped to :class:`AttemptError` here and nowhere else
(:func:`map_litellm_error`, tested over every exception class litellm exports).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from gateway.providers.base import AttemptError, Deployment

__all__ = ["LitellmAdapter", "map_litellm_error"]

_litellm: Any = None


def _import_litellm() -> Any:
    global _litellm
    if _litellm is None:
        # Never fetch the model cost map over the network at import time.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.num_retries = 0
        litellm.drop_params = False
        _litellm = litellm
    return _litellm


def _retry_after(exc: BaseException) -> float | None:
    from gateway.providers.openai_wire import parse_retry_after

    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    return parse_retry_after(value) if isinstance(value, str) else None


def map_litellm_error(exc: BaseException) -> AttemptError:
    """Map any exception litellm raises to an AttemptError (total over its classes)."""
    if isinstance(exc, AttemptError):
        return exc
    name = type(exc).__name__
    message = str(getattr(exc, "message", "") or exc) or name
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or name in (
        "Timeout",
        "APITimeoutError",
    ):
        return AttemptError("timeout", "The provider did not answer in time")
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = None
    if name in ("APIConnectionError", "ServiceUnavailableError") and status in (None, 500):
        return AttemptError("connect", message, status=503 if status else None)
    if name == "ContextWindowExceededError":
        return AttemptError("status", message, status=status or 400, code="context_length_exceeded")
    if name == "ContentPolicyViolationError":
        return AttemptError(
            "status", message, status=status or 400, code="content_policy_violation"
        )
    if name in ("APIResponseValidationError", "JSONSchemaValidationError"):
        return AttemptError("malformed", "The provider's answer could not be parsed")
    if status is None:
        # litellm's own refusals without an HTTP status (unknown provider, bad params,
        # budget, guardrail): a configuration problem on our side, never retried.
        return AttemptError("status", message, status=500, code="provider_error")
    code = getattr(exc, "code", None)
    return AttemptError(
        "status",
        message,
        status=status,
        code=code if isinstance(code, str) else None,
        retry_after=_retry_after(exc),
    )


class _LitellmStream:
    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._iter = stream.__aiter__()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            chunk = await self._iter.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            raise map_litellm_error(exc) from None
        data: dict[str, Any] = chunk.model_dump(exclude_none=True)
        return data

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: S110 - closing a broken stream must not raise
                pass


class LitellmAdapter:
    def warm_up(self) -> None:
        _import_litellm()

    def _kwargs(self, dep: Deployment, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        kwargs = {k: v for k, v in body.items() if k != "model"}
        kwargs.update(
            model=dep.wire_model,
            timeout=timeout_s,
            num_retries=0,
            max_retries=0,
        )
        if dep.api_base:
            kwargs["api_base"] = dep.api_base
        if dep.api_keys:
            kwargs["api_key"] = dep.api_keys[0]
        return kwargs

    async def complete(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        litellm = _import_litellm()
        try:
            async with asyncio.timeout(timeout_s):
                response = await litellm.acompletion(**self._kwargs(deployment, body, timeout_s))
        except TimeoutError:
            raise AttemptError("timeout", f"No answer within {timeout_s:g}s") from None
        except Exception as exc:
            raise map_litellm_error(exc) from None
        data: dict[str, Any] = response.model_dump(exclude_none=True)
        return data

    async def open_stream(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> _LitellmStream:
        litellm = _import_litellm()
        try:
            async with asyncio.timeout(timeout_s):
                stream = await litellm.acompletion(**self._kwargs(deployment, body, timeout_s))
        except TimeoutError:
            raise AttemptError("timeout", f"No answer within {timeout_s:g}s") from None
        except Exception as exc:
            raise map_litellm_error(exc) from None
        return _LitellmStream(stream)
