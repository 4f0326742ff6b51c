"""What a provider is to the gateway: a deployment, an attempt, and its failure.

Usage::

    dep = Deployment.from_config("support-default", 0, cfg, environ)
    reply = await provider.complete(dep, body, timeout_s=10)        # dict, OpenAI wire
    stream = await provider.open_stream(dep, body, timeout_s=10)    # UpstreamStream

Providers raise only :class:`AttemptError`; the router (``providers/router.py``)
decides about retrying and falling back, and maps the final outcome onto
``gateway.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.settings import DeploymentConfig, read_env_secrets

__all__ = ["AttemptError", "Deployment", "Provider", "UpstreamStream"]

_PROVIDER_NAMES = {
    # gen_ai.provider.name well-known values (semantic conventions v1.41.1)
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "casegate-demo": "casegate.demo",
}

_DEFAULT_BASES = {"openai": "https://api.openai.com/v1"}


@dataclass(frozen=True)
class Deployment:
    route: str
    index: int
    model: str  # as configured, e.g. "openai/gpt-4o-mini"
    wire_model: str  # the name sent to the provider
    served_model: str  # the response's `model`: no provider prefix
    provider: str  # gen_ai.provider.name
    via: str  # openai | litellm | demo
    api_base: str | None
    api_keys: tuple[str, ...]
    timeout_s: float
    server_address: str | None
    server_port: int | None

    @classmethod
    def from_config(
        cls,
        route: str,
        index: int,
        cfg: DeploymentConfig,
        environ: Mapping[str, str],
        *,
        source: str,
    ) -> Deployment:
        prefix, sep, rest = cfg.model.partition("/")
        served = rest if sep else cfg.model
        via = cfg.resolved_via()
        api_base = cfg.api_base or (_DEFAULT_BASES.get(prefix) if via == "openai" else None)
        keys = tuple(
            read_env_secrets(
                cfg.api_key_env,
                path=f"routes.{route}[{index}].api_key_env",
                environ=environ,
                source=source,
            )
        )
        address = port = None
        if api_base:
            parts = urlsplit(api_base)
            address = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(
            route=route,
            index=index,
            model=cfg.model,
            wire_model=served if via == "openai" else cfg.model,
            served_model=served,
            provider=_PROVIDER_NAMES.get(prefix if sep else "openai", prefix),
            via=via,
            api_base=api_base,
            api_keys=keys,
            timeout_s=cfg.timeout_s,
            server_address=address,
            server_port=port,
        )


class AttemptError(Exception):
    """One failed attempt at one deployment. ``kind`` decides what happens next.

    kinds: ``timeout`` · ``connect`` (refused, reset, DNS) · ``status`` (an HTTP error
    status from the provider) · ``malformed`` (an answer we cannot parse)
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying on the same deployment: timeouts, 408, 429, 5xx, resets."""
        if self.kind in ("timeout", "connect", "malformed"):
            return True
        return self.status is not None and (self.status in (408, 429) or self.status >= 500)

    @property
    def falls_back(self) -> bool:
        """Worth trying the next deployment: anything but the caller's own 4xx.

        401/403/404 from a provider are our configuration's fault (a bad key, an
        unknown model), not the client's, so another deployment may still serve.
        """
        if self.transient:
            return True
        return self.status in (401, 403, 404)

    @property
    def error_type(self) -> str:
        if self.kind == "status" and self.status is not None:
            return str(self.status)
        return self.kind


class UpstreamStream(Protocol):
    """An open streaming answer: chunk dicts in wire format, then StopAsyncIteration."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...
    async def __anext__(self) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


class Provider(Protocol):
    async def complete(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]: ...

    async def open_stream(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> UpstreamStream: ...
