"""Load a policy bundle: parse YAML, validate, hash, compile.

    loaded = load_bundle_file(default_bundle_path())
    loaded.version, loaded.sha256          # "2026-11-28.1", "9f2c…"
    loaded.policy.use_cases["triage"]      # the compiled runtime form

The sha256 is over the bytes exactly as given (DESIGN 10.8), so the store, the admin
API and ``sha256sum`` agree. Every problem is reported at once in a `BundleError`, each
with its path in the file (or its line, for YAML syntax).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.compiled import CompiledPolicy
from policies.compiler import compile_bundle
from policies.errors import BundleError
from policies.schema import Bundle

__all__ = ["LoadedBundle", "default_bundle_path", "load_bundle", "load_bundle_file"]

_TOP = "(top level)"


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    """A bundle as loaded: its exact text, digest, model and compiled policy."""

    text: str
    sha256: str
    version: str
    bundle: Bundle
    policy: CompiledPolicy


def default_bundle_path() -> Path:
    """The bundle shipped with the package (``policies/bundles/default.yaml``)."""
    return Path(__file__).resolve().parent / "bundles" / "default.yaml"


def load_bundle_file(path: str | os.PathLike[str]) -> LoadedBundle:
    """Load the bundle at *path*; errors name the path as their source."""
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise BundleError(source, [(_TOP, f"cannot read the file: {exc.strerror}")]) from None
    return load_bundle(data, source=source)


def load_bundle(text: str | bytes, *, source: str = "<bundle>") -> LoadedBundle:
    """Load a bundle from its text (UTF-8 if bytes); raise `BundleError` if it is invalid."""
    if isinstance(text, bytes):
        raw = text
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(source, [(_TOP, f"not valid UTF-8 (byte {exc.start})")]) from None
    else:
        decoded = text
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BundleError(
                source, [(_TOP, f"not encodable as UTF-8 (character {exc.start})")]
            ) from None
    digest = hashlib.sha256(raw).hexdigest()
    document = _parse_yaml(decoded, source)
    if not isinstance(document, dict):
        raise BundleError(source, [(_TOP, "a bundle must be a mapping (version, use_cases)")])
    try:
        bundle = Bundle.model_validate(document)
    except ValidationError as exc:
        raise BundleError(source, _pydantic_errors(exc)) from None
    policy = compile_bundle(bundle, sha256=digest, source=source)
    return LoadedBundle(
        text=decoded, sha256=digest, version=bundle.version, bundle=bundle, policy=policy
    )


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys instead of keeping the last one.

    A repeated ``triage:`` or ``automation:`` would otherwise silently replace the
    first, and a reviewer reading the file would see a policy that is not in force.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                duplicate = False  # unhashable key: yaml reports it below
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if not isinstance(key, (list, dict)):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and not exc.context.startswith("while"):
            problem = f"{exc.context}, {exc.problem}"  # "expected a single document, but ..."
        if mark is None:
            raise BundleError(source, [(_TOP, problem)]) from None
        where = f"line {mark.line + 1}"
        raise BundleError(source, [(where, f"{problem} (column {mark.column + 1})")]) from None
    except yaml.YAMLError as exc:
        raise BundleError(source, [(_TOP, f"invalid YAML: {exc}")]) from None


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        message = err["msg"]
        if loc and loc[-1] == "[key]":
            # A mapping key failed its name check; report at the key itself.
            loc.pop()
            message = f"invalid name: {message}"
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        errors.append((_render_loc(loc), message))
    return errors


def _render_loc(loc: list[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or _TOP
