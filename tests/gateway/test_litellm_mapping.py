"""litellm's exceptions map onto our AttemptError at one boundary, totally."""

from __future__ import annotations

import inspect
import os

import pytest

from gateway.providers.base import AttemptError
from gateway.providers.litellm_adapter import map_litellm_error

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _instances() -> list[BaseException]:
    import httpx
    import litellm.exceptions as lx

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    out = []
    for name, cls in vars(lx).items():
        if not (inspect.isclass(cls) and issubclass(cls, BaseException)) or cls.__module__.split(
            "."
        )[0] not in ("litellm", "openai"):
            continue
        exc = cls.__new__(cls)
        BaseException.__init__(exc, f"{name} happened")
        exc.message = f"{name} happened"  # type: ignore[attr-defined]
        exc.request = request  # type: ignore[attr-defined]
        out.append(exc)
    return out


@pytest.mark.parametrize("exc", _instances(), ids=lambda e: type(e).__name__)
def test_every_litellm_exception_maps_to_an_attempt_error(exc: BaseException) -> None:
    mapped = map_litellm_error(exc)
    assert isinstance(mapped, AttemptError)
    assert mapped.kind in {"timeout", "connect", "status", "malformed"}


def test_status_classes_keep_their_status_and_retry_decision() -> None:
    import litellm.exceptions as lx

    rate = lx.RateLimitError("slow", llm_provider="openai", model="m")
    assert map_litellm_error(rate).status == 429 and map_litellm_error(rate).transient
    bad = lx.BadRequestError("bad", model="m", llm_provider="openai")
    assert map_litellm_error(bad).status == 400 and not map_litellm_error(bad).falls_back
    ctx = lx.ContextWindowExceededError("long", model="m", llm_provider="openai")
    assert map_litellm_error(ctx).code == "context_length_exceeded"
    assert map_litellm_error(lx.Timeout("t", model="m", llm_provider="openai")).kind == "timeout"
