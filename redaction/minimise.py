"""Keep only the approved data set of a support context.

    out = minimise(
        {"product_id": "P-1", "email": "a@b.co", "order": {"items": [{"sku": "S1", "price": 9}]}},
        required=["product_id"],
        optional=["order.items[].sku"],
    )
    out.kept      # {"product_id": "P-1", "order": {"items": [{"sku": "S1"}]}}
    out.used      # ("product_id", "order.items[].sku")
    out.stripped  # ("email", "order.items[].price")
    out.missing   # ()

Paths are dotted; `name[]` steps into every item of a list, keeping the list's length.
A path ending at an object or a list keeps it whole. A null value is dropped and counts
as absent, so a null required field is missing. `used`, `stripped` and `missing` hold
names only, never values; `stripped` names the top of each removed subtree, sorted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Minimised", "minimise"]

_SEGMENT = re.compile(r"([^.\[\]]+)(\[\])?")


@dataclass(frozen=True)
class Minimised:
    kept: dict[str, Any]
    used: tuple[str, ...]
    stripped: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass
class _Node:
    is_list: bool
    children: dict[str, _Node] | None  # None: keep the value whole


_Path = tuple[tuple[str, bool], ...]


def _parse(path: str) -> _Path:
    segments = []
    for part in path.split("."):
        m = _SEGMENT.fullmatch(part)
        if m is None:
            raise ValueError(f"malformed data-set path {path!r}")
        segments.append((m.group(1), m.group(2) is not None))
    return tuple(segments)


@lru_cache(maxsize=256)
def _compile(paths: tuple[str, ...]) -> tuple[dict[str, _Node], tuple[_Path, ...]]:
    root: dict[str, _Node] = {}
    parsed = tuple(_parse(p) for p in paths)
    for segments in parsed:
        children: dict[str, _Node] | None = root
        for depth, (name, is_list) in enumerate(segments):
            assert children is not None
            last = depth == len(segments) - 1
            node = children.get(name)
            if node is None:
                node = children[name] = _Node(is_list, None if last else {})
            elif node.is_list != is_list:
                raise ValueError(f"data-set paths disagree on whether {name!r} is a list")
            elif last:
                node.children = None  # the whole value wins over some of its leaves
            if node.children is None:
                break
            children = node.children
    return root, parsed


_ABSENT: Any = object()


def _keep_object(
    obj: Mapping[str, Any], spec: dict[str, _Node], prefix: str, out: set[str]
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        node = spec.get(key)
        if node is None:
            out.add(prefix + key)
            continue
        value = _keep(value, node, prefix + key, out)
        if value is not _ABSENT:
            kept[key] = value
    return kept


def _keep(value: Any, node: _Node, name: str, out: set[str]) -> Any:
    if value is None:
        return _ABSENT
    if node.is_list:
        if not isinstance(value, list):
            out.add(name)
            return _ABSENT
        if node.children is None:
            return value
        items: list[Any] = []
        for item in value:
            if isinstance(item, Mapping):
                items.append(_keep_object(item, node.children, name + "[].", out))
            else:
                out.add(name + "[]")
                items.append({})
        return items
    if node.children is None:
        return value
    if not isinstance(value, Mapping):
        out.add(name)
        return _ABSENT
    kept = _keep_object(value, node.children, name + ".", out)
    return kept if kept else _ABSENT


def _present(value: Any, segments: _Path) -> bool:
    if not segments:
        return value is not None
    (name, is_list), rest = segments[0], segments[1:]
    if not isinstance(value, Mapping) or value.get(name) is None:
        return False
    inner = value[name]
    if is_list:
        return isinstance(inner, list) and (
            bool(inner) if not rest else any(_present(item, rest) for item in inner)
        )
    return _present(inner, rest)


def minimise(
    context: Mapping[str, Any], required: Sequence[str], optional: Sequence[str]
) -> Minimised:
    """Keep the `required` and `optional` paths of `context`; report what happened."""
    paths = tuple(dict.fromkeys([*required, *optional]))
    spec, parsed = _compile(paths)
    stripped: set[str] = set()
    kept = _keep_object(context, spec, "", stripped)
    present = {path: _present(kept, segments) for path, segments in zip(paths, parsed, strict=True)}
    return Minimised(
        kept=kept,
        used=tuple(p for p in paths if present[p]),
        stripped=tuple(sorted(stripped)),
        missing=tuple(p for p in dict.fromkeys(required) if not present[p]),
    )
