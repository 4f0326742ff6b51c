"""Kill-switch semantics: which switches cover a call, and which scopes exist.

    effect = evaluate_switches(active, use_case="triage", action_class="automation",
                               route="support-default")
    effect.halt            # the halting switch, if any covers the call
    effect.removed_tools   # tools no call may use, in either mode (DESIGN 10.10)

    scope = parse_scope(text, valid_scopes(policy, deployments))   # or ScopeError

A scope is ``global``, ``use_case:X``, ``action_class:X``, ``route:X``, ``model:M`` or
``tool:T``. The first four cover calls (``halt`` refuses them, ``degrade`` lowers their
class); ``model:`` and ``tool:`` take one deployment model or one tool out of service,
whatever the mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from policies.compiled import CompiledPolicy
from policies.errors import ScopeError
from policies.schema import ACTION_CLASSES

__all__ = [
    "SCOPE_KINDS",
    "Switch",
    "SwitchEffect",
    "evaluate_switches",
    "parse_scope",
    "valid_scopes",
]

#: Scope kinds, in the order a halting switch is reported when several cover a call.
SCOPE_KINDS: tuple[str, ...] = ("global", "use_case", "action_class", "route", "model", "tool")
_MODES = ("halt", "degrade")
_SPACE = " \t\r\n"  # ASCII only: a name is exact, so no Unicode trimming


@dataclass(frozen=True, slots=True)
class Switch:
    """An engaged switch: its canonical scope and mode."""

    scope: str
    mode: Literal["halt", "degrade"]

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be halt or degrade, not {self.mode!r}")


@dataclass(frozen=True, slots=True)
class SwitchEffect:
    """What the engaged switches do to one call."""

    halt: Switch | None
    degrade: tuple[Switch, ...]
    removed_tools: frozenset[str]
    removed_models: frozenset[str]


def evaluate_switches(
    switches: Sequence[Switch], *, use_case: str, action_class: str, route: str
) -> SwitchEffect:
    """Which of *switches* cover a call of *use_case* / *action_class* on *route*.

    When several halting switches cover the call, the broadest is reported (global,
    then use case, action class, route), so the message names the switch to release
    first.
    """
    if not switches:  # the usual case: nothing engaged
        return _NO_EFFECT
    covering = {
        "global": "global",
        f"use_case:{use_case}": "use_case",
        f"action_class:{action_class}": "action_class",
        f"route:{route}": "route",
    }
    halts: list[Switch] = []
    degrades: list[Switch] = []
    tools: set[str] = set()
    models: set[str] = set()
    for switch in switches:
        scope = switch.scope
        if scope in covering:
            (halts if switch.mode == "halt" else degrades).append(switch)
        elif scope.startswith("tool:"):
            tools.add(scope[len("tool:") :])
        elif scope.startswith("model:"):
            models.add(scope[len("model:") :])
    halt = min(halts, key=lambda s: SCOPE_KINDS.index(covering[s.scope]), default=None)
    return SwitchEffect(
        halt=halt,
        degrade=tuple(degrades),
        removed_tools=frozenset(tools),
        removed_models=frozenset(models),
    )


_NO_EFFECT = SwitchEffect(
    halt=None, degrade=(), removed_tools=frozenset(), removed_models=frozenset()
)


def valid_scopes(policy: CompiledPolicy, deployments: Mapping[str, Sequence[str]]) -> list[str]:
    """Every scope that names something, sorted within each kind.

    *deployments* maps each configured route to the models of its deployments. Routes
    are those of the configuration and of the bundle (a bundle may name a route the
    configuration lacks; switching it off must still be possible).
    """
    scopes = ["global"]
    scopes += [f"use_case:{name}" for name in sorted(policy.use_cases)]
    scopes += [f"action_class:{name}" for name in ACTION_CLASSES]
    scopes += [f"route:{name}" for name in sorted(set(deployments) | policy.routes())]
    models = {model for route_models in deployments.values() for model in route_models}
    scopes += [f"model:{name}" for name in sorted(models)]
    scopes += [f"tool:{name}" for name in sorted(policy.tools())]
    return scopes


def parse_scope(scope: str, valid: Sequence[str]) -> str:
    """Return the canonical form of *scope* if it is in *valid*, else raise `ScopeError`.

    Surrounding ASCII whitespace is ignored and the kind is case-insensitive
    (``Use_Case: triage`` is ``use_case:triage``); names are exact.
    """
    text = scope.strip(_SPACE)
    kind, sep, name = text.partition(":")
    canonical = f"{kind.strip(_SPACE).lower()}:{name.strip(_SPACE)}" if sep else text.lower()
    if canonical in valid:
        return canonical
    raise ScopeError(scope, valid)
