"""Everything a worker holds for its lifetime, built once at startup.

Usage::

    rt = await Runtime.start(settings, os.environ, source="casegate.yaml")
    ...
    await rt.stop()

Startup order: keys, credentials, routes (each must exist for the bundle's use
cases), the state store (migrated), then policy: the configured bundle is stored if
its sha256 is new and activated only if nothing is active yet, so a restart never
undoes a rollback; the active version is then read back from the store, which is
the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.auth import Directory
from gateway.consent import ConsentClient
from gateway.drafts import DraftService
from gateway.keys import KeyMaterial, load_keys
from gateway.limits import Counters, Limiter, RedisCounters, check_budgets
from gateway.lineage import LineageWriter, new_lineage_id
from gateway.metrics import Metrics, start_metrics
from gateway.policy_admin import fold_activations
from gateway.providers.base import Deployment, Provider
from gateway.providers.breaker import CircuitBreaker
from gateway.providers.router import Router
from gateway.recovery import start_lineage_service
from gateway.settings import ConfigError, Settings
from gateway.stores import Activation, StateStore, StoredBundle, open_store
from policies import (
    BundleError,
    CompiledUseCase,
    LoadedBundle,
    Switch,
    default_bundle_path,
    load_bundle,
)
from redaction import ENTITIES, Redactor, Vault
from tracing import Telemetry, configure_telemetry

if TYPE_CHECKING:
    from gateway.switchboard import Switchboard
    from gateway.tripwires import Tripwires

__all__ = ["ActivePolicy", "Runtime", "build_deployments"]

log = logging.getLogger("casegate")
_UNREAD = (Switch("action_class:automation", "halt"),)


@dataclass(frozen=True)
class ActivePolicy:
    loaded: LoadedBundle
    mode: str
    redactors: Mapping[str, Redactor]

    @property
    def version(self) -> str:
        return self.loaded.version

    def use_case(self, name: str) -> CompiledUseCase | None:
        return self.loaded.policy.use_cases.get(name)

    def lineage(self) -> dict[str, str]:
        return {"version": self.loaded.version, "sha256": self.loaded.sha256, "mode": self.mode}


def compile_policy(loaded: LoadedBundle, mode: str, *, source: str) -> ActivePolicy:
    redactors: dict[str, Redactor] = {}
    for name, uc in loaded.policy.use_cases.items():
        unknown = sorted(set(uc.entities) - ENTITIES)
        if unknown:
            raise ConfigError(
                f"{source}: use_cases.{name}.redaction.entities: no detector for "
                f"{', '.join(unknown)} (known: {', '.join(sorted(ENTITIES))})"
            )
        redactors[name] = Redactor(sorted(uc.entities))
    return ActivePolicy(loaded, mode, redactors)


def build_deployments(
    settings: Settings, environ: Mapping[str, str], *, source: str
) -> dict[str, list[Deployment]]:
    return {
        route: [
            Deployment.from_config(route, i, cfg, environ, source=source)
            for i, cfg in enumerate(deployments)
        ]
        for route, deployments in settings.routes.items()
    }


def read_bundle_text(settings: Settings, *, source: str) -> tuple[str, str]:
    path = settings.bundle_path() or default_bundle_path()
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise ConfigError(f"{source}: policy_bundle: cannot read {path}: {exc.strerror}") from None


@dataclass
class Runtime:
    settings: Settings
    source: str
    keys: KeyMaterial
    directory: Directory
    deployments: dict[str, list[Deployment]]
    store: StateStore
    lineage: LineageWriter
    router: Router
    telemetry: Telemetry
    policy: ActivePolicy
    closers: list[Any] = field(default_factory=list)
    #: rate limits and budgets; None when no cap is configured (no cost per call)
    limiter: Limiter | None = None
    #: the consent service of record; None when consent comes with each request
    consent: ConsentClient | None = None
    #: decrypted pseudonym maps of recent cases: case key -> (the ciphertext, the map)
    vaults: dict[str, tuple[bytes, Vault]] = field(default_factory=dict)
    #: long-lived tasks (listeners, checkpoint writers); cancelled by stop()
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    #: kill switches and policy fan-out (gateway/switchboard.py), set by start()
    switchboard: Switchboard | None = None
    #: a policy version in observe mode: decided beside ``policy``, recorded, never applied
    observed: ActivePolicy | None = None
    #: this worker's Prometheus counters (gateway/metrics.py), summed over workers
    metrics: Metrics = field(default_factory=lambda: Metrics(None))
    #: tripwire counting and evaluation (gateway/tripwires.py), set by start()
    tripwires: Tripwires | None = None
    #: chat calls inside `run_chat` now (the lineage writer commits at once when alone)
    chats_in_flight: int = 0

    def switches(self) -> tuple[Switch, ...]:
        # no switchboard yet: refuse automation, as a worker that never read the state
        return self.switchboard.current() if self.switchboard is not None else _UNREAD

    @property
    def drafts(self) -> DraftService:
        return DraftService(self.store, self.keys, self.lineage)

    @classmethod
    async def start(
        cls, settings: Settings, environ: Mapping[str, str] | None = None, *, source: str
    ) -> Runtime:
        env = os.environ if environ is None else environ
        keys = load_keys(settings, env, source=source)
        directory = Directory.build(settings, env, source=source)
        deployments = build_deployments(settings, env, source=source)
        text, bundle_source = read_bundle_text(settings, source=source)
        try:
            configured = load_bundle(text, source=bundle_source)
        except BundleError as exc:
            raise ConfigError(str(exc)) from None
        check_routes(configured, deployments, settings, source=source)

        providers: dict[str, Provider] = {}
        closers: list[Any] = []
        vias = {d.via for deps in deployments.values() for d in deps}
        if "openai" in vias:
            from gateway.providers.openai_wire import OpenAIWire

            wire = OpenAIWire()
            await wire.start()
            providers["openai"] = wire
            closers.append(wire.close)
        if "litellm" in vias:
            from gateway.providers.litellm_adapter import LitellmAdapter

            adapter = LitellmAdapter()
            adapter.warm_up()
            providers["litellm"] = adapter
        if "demo" in vias:
            from gateway.providers.demo import DemoProvider

            providers["demo"] = DemoProvider()
        router = Router(
            deployments,
            settings.retry,
            providers,
            breaker=CircuitBreaker(
                failures=settings.circuit.failures, cooldown_s=settings.circuit.cooldown_s
            ),
        )

        store = open_store(settings)
        await store.open()
        closers.append(store.close)
        await store.migrate()
        active, first_activation = await sync_policy(store, configured, source=source)
        telemetry = configure_telemetry("casegate", env=env)
        closers.append(telemetry.shutdown)
        rt = cls(
            settings=settings,
            source=source,
            keys=keys,
            directory=directory,
            deployments=deployments,
            store=store,
            lineage=LineageWriter(store),
            router=router,
            telemetry=telemetry,
            policy=active,
            closers=closers,
        )
        rt.lineage.alone = lambda: rt.chats_in_flight <= 1
        rt.limiter = build_limiter(settings, store, deployments, closers)
        start_drafts_and_consent(rt, env)
        from gateway.switchboard import start_switchboard

        await start_switchboard(rt, env)
        await start_lineage_service(rt, env)  # heartbeat, recovery, checkpoints, retention
        if first_activation is not None:
            # like every activation, the first one is a lineage event (DESIGN.md section 4)
            await rt.lineage.event(
                "policy.activated",
                new_lineage_id(),
                {
                    "version": first_activation.version,
                    "sha256": configured.sha256,
                    "mode": first_activation.mode,
                    "reason": first_activation.reason,
                    "by": first_activation.by,
                    "previous": None,
                    "rollback": False,
                },
            )
        start_metrics(rt, env)
        from gateway.tripwires import start_tripwires

        await start_tripwires(rt, env)  # after the metrics: it counts into rt.metrics
        return rt

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(BaseException):
                await task
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                result = close()
                if hasattr(result, "__await__"):
                    await result


def check_routes(
    loaded: LoadedBundle,
    deployments: Mapping[str, list[Deployment]],
    settings: Settings,
    *,
    source: str,
) -> None:
    for name, uc in loaded.policy.use_cases.items():
        if uc.route not in deployments:
            raise ConfigError(
                f"{source}: routes: the bundle's use case {name!r} needs route {uc.route!r}, "
                f"which is not configured (configured: {', '.join(sorted(deployments)) or 'none'})"
            )
    consent = settings.consent_service
    if consent is not None and not consent.url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: consent_service.url: must be an http(s) URL")
    known = set(loaded.policy.use_cases)
    check_budgets(
        settings.budgets,
        deployments,
        [c.name for c in settings.clients],
        sorted(known),
        source=source,
    )
    for i, client in enumerate(settings.clients):
        for uc_name in client.use_cases:
            if uc_name not in known:
                raise ConfigError(
                    f"{source}: clients[{i}].use_cases: {uc_name!r} is not a use case of the "
                    f"bundle (known: {', '.join(sorted(known))})"
                )


def build_limiter(
    settings: Settings,
    store: StateStore,
    deployments: Mapping[str, list[Deployment]],
    closers: list[Any],
) -> Limiter | None:
    if not settings.budgets.any():
        return None
    counters: Counters = store
    if settings.redis:
        redis_counters = RedisCounters(settings.redis)
        closers.append(redis_counters.close)
        counters = redis_counters
    return Limiter(settings.budgets, counters, deployments)


def start_drafts_and_consent(rt: Runtime, env: Mapping[str, str]) -> None:
    """The draft expiry sweep, and the consent service client when one is configured
    (its key must be in the environment: startup fails otherwise)."""
    rt.background.append(asyncio.create_task(rt.drafts.sweep_forever()))
    if rt.settings.consent_service is not None:
        rt.consent = ConsentClient.from_settings(rt.settings.consent_service, env, source=rt.source)
        rt.closers.append(rt.consent.close)
        rt.consent.start()


async def sync_policy(
    store: StateStore, configured: LoadedBundle, *, source: str
) -> tuple[ActivePolicy, Activation | None]:
    """The active policy; and the activation this start made, if the store had none."""
    now = int(time.time() * 1000)
    first: Activation | None = None
    await store.put_bundle(
        StoredBundle(configured.version, configured.sha256, configured.text, now, "config")
    )
    history = await store.activations()
    if not history:
        first = Activation(configured.version, "enforce", now, "config", "first start")
        await store.activate(first)
        history = await store.activations()
    current = fold_activations(history)[0] or history[-1]  # observe runs beside it
    if current.version == configured.version:
        return compile_policy(configured, current.mode, source=source), first
    stored = await store.get_bundle(current.version)
    if stored is None:
        raise ConfigError(f"state store: active policy version {current.version!r} is missing")
    loaded = load_bundle(stored.text, source=f"state store policy {current.version!r}")
    return compile_policy(loaded, current.mode, source=source), first
