"""Configuration: one closed, validated model, read once at startup.

Usage::

    settings = load_settings("casegate.yaml")      # ConfigError names file and path
    settings = embedded_default(Path.cwd())        # no config: SQLite + demo route

Secrets never appear in the file: every secret is named by an ``*_env`` key (a list
is accepted so two secrets are valid during a rotation) and read from the environment
when the gateway starts (:func:`resolve_secrets`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ROLES",
    "ClientConfig",
    "ConfigError",
    "ConsentServiceConfig",
    "DeploymentConfig",
    "KeysConfig",
    "LimitsConfig",
    "OperatorConfig",
    "RetryConfig",
    "Settings",
    "embedded_default",
    "load_settings",
    "read_env_secrets",
]

ROLES = ("approver", "incident_responder", "auditor", "admin")
DEMO_ROUTE = "support-default"
DEMO_MODEL = "casegate-demo/offline"

EnvNames = str | list[str]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentConfig(_Closed):
    """One provider deployment of a route; tried in order."""

    model: str = Field(min_length=1, max_length=200)
    api_base: str | None = None
    api_key_env: EnvNames | None = None
    via: Literal["auto", "openai", "litellm", "demo"] = "auto"
    timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    def resolved_via(self) -> str:
        if self.via != "auto":
            return self.via
        if self.model.startswith(DEMO_MODEL.split("/")[0] + "/"):
            return "demo"
        return "openai" if self.model.startswith("openai/") else "litellm"


class ClientConfig(_Closed):
    name: str = Field(min_length=1, max_length=64)
    key_env: EnvNames
    use_cases: list[str]


class OperatorConfig(_Closed):
    name: str = Field(min_length=1, max_length=64)
    token_env: EnvNames
    roles: list[Literal["approver", "incident_responder", "auditor", "admin"]]


class KeysConfig(_Closed):
    customer_hash_env: EnvNames
    data_key_env: EnvNames
    signing_key_env: EnvNames


class LimitsConfig(_Closed):
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    deadline_s: float = Field(default=60.0, gt=0)
    first_chunk_timeout_s: float = Field(default=30.0, gt=0)


class RetryConfig(_Closed):
    attempts: int = Field(default=3, ge=1, le=10)
    max_retry_after_s: float = Field(default=10.0, ge=0)


class CircuitConfig(_Closed):
    failures: int = Field(default=5, ge=0)
    cooldown_s: float = Field(default=10.0, gt=0)


class LimitSpec(_Closed):
    """Caps for one client key or one use case; each is optional."""

    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_day: int | None = Field(default=None, gt=0)
    spend_per_day: float | None = Field(default=None, gt=0)


class PriceSpec(_Closed):
    """Price of a deployment's tokens, in your currency per 1,000 tokens."""

    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)


class BudgetsConfig(_Closed):
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    clients: dict[str, LimitSpec] = Field(default_factory=dict)
    use_cases: dict[str, LimitSpec] = Field(default_factory=dict)
    #: the output-token bound used by the pre-flight estimate when no max_tokens applies
    default_max_output_tokens: int = Field(default=4096, gt=0)

    def any(self) -> bool:
        return bool(self.clients or self.use_cases)


class ConsentServiceConfig(_Closed):
    url: str
    api_key_env: EnvNames | None = None
    ttl_s: float = Field(default=300.0, gt=0)
    timeout_ms: int = Field(default=500, gt=0)


class Settings(_Closed):
    state: str = "sqlite:///casegate.db"
    redis: str | None = None
    policy_bundle: str | None = None
    routes: dict[str, list[DeploymentConfig]] = Field(default_factory=dict)
    clients: list[ClientConfig] = Field(default_factory=list)
    operators: list[OperatorConfig] = Field(default_factory=list)
    keys: KeysConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    retry: RetryConfig = RetryConfig()
    circuit: CircuitConfig = CircuitConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    consent_service: ConsentServiceConfig | None = None
    #: Where the file was read from (relative paths resolve against its directory).
    base_dir: str = "."
    #: True for the embedded default (demo credentials, demo route).
    embedded: bool = False

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("routes")
    @classmethod
    def _routes_nonempty(
        cls, value: dict[str, list[DeploymentConfig]]
    ) -> dict[str, list[DeploymentConfig]]:
        for name, deployments in value.items():
            if not deployments:
                raise ValueError(f"route {name!r} has no deployments")
        return value

    def sqlite_path(self) -> Path | None:
        if not self.state.startswith("sqlite:///"):
            return None
        raw = self.state[len("sqlite:///") :]
        path = Path(raw)
        return path if path.is_absolute() else Path(self.base_dir) / path

    def bundle_path(self) -> Path | None:
        if self.policy_bundle is None:
            return None
        path = Path(self.policy_bundle)
        return path if path.is_absolute() else Path(self.base_dir) / path

    def is_postgres(self) -> bool:
        return self.state.startswith(("postgresql://", "postgres://"))


class ConfigError(Exception):
    """A configuration problem; the message names the file, the path and the problem."""


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_validation(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {_loc(loc)}: {msg}")
    return "\n".join(lines)


def parse_settings(data: Any, *, source: str, base_dir: Path) -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: (top level): must be a mapping of keys")
    for reserved in ("base_dir", "embedded"):
        if reserved in data:
            raise ConfigError(f"{source}: {reserved}: unknown key")
    try:
        return Settings.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as exc:
        raise ConfigError(_format_validation(source, exc)) from None


def load_settings(path: str | os.PathLike[str]) -> Settings:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(parse)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}: {where}: invalid YAML: {problem}") from None
    return parse_settings(data, source=str(file), base_dir=file.resolve().parent)


def embedded_default(workdir: Path, use_cases: list[str]) -> Settings:
    """The no-config default: SQLite in ``workdir``, the offline demo route, demo users."""
    return Settings(
        state="sqlite:///casegate.db",
        routes={DEMO_ROUTE: [DeploymentConfig(model=DEMO_MODEL, via="demo")]},
        clients=[
            ClientConfig(name="demo", key_env="CASEGATE_DEMO_CLIENT_KEY", use_cases=use_cases)
        ],
        operators=[
            OperatorConfig(
                name="demo",
                token_env="CASEGATE_DEMO_OPERATOR_TOKEN",  # noqa: S106 - a variable name
                roles=["admin"],
            )
        ],
        base_dir=str(workdir.resolve()),
        embedded=True,
    )


def env_names(names: EnvNames | None) -> list[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def read_env_secrets(
    names: EnvNames | None, *, path: str, environ: Mapping[str, str], source: str
) -> list[str]:
    """The secrets named by an ``*_env`` key; a missing or empty variable is an error."""
    values = []
    for name in env_names(names):
        value = environ.get(name, "")
        if not value:
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")
        values.append(value)
    return values
