"""The dependency pins a user relies on: litellm exact and safe, the lock hashed and in step."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MALICIOUS = {"1.82.7", "1.82.8"}


def _lock() -> dict[str, str]:
    text = (ROOT / "requirements/lock.txt").read_text()
    return {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M)}


def test_litellm_is_pinned_exactly_to_a_safe_version() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("litellm")]
    match = re.fullmatch(r"litellm==(\d+)\.(\d+)\.(\d+)", pin)
    assert match, f"litellm must be pinned exactly, got {pin!r}"
    version = tuple(int(x) for x in match.groups())
    assert version >= (1, 84, 0)
    assert ".".join(match.groups()) not in MALICIOUS
    assert _lock()["litellm"] == ".".join(match.groups())


def test_every_locked_requirement_carries_a_hash() -> None:
    text = (ROOT / "requirements/lock.txt").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n\n", 1)[1])
    for block in blocks:
        if "==" in block.splitlines()[0]:
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_installed_versions_match_the_lock() -> None:
    from importlib import metadata

    lock = _lock()
    for name in ("litellm", "starlette", "pydantic", "aiohttp", "tenacity", "opentelemetry-sdk"):
        assert metadata.version(name) == lock[name], name


def test_no_unexpected_pth_startup_files() -> None:
    """A .pth file runs code at interpreter start (the litellm 1.82.7/8 attack vector)."""
    import site
    import sys

    allowed = re.compile(
        r"^(distutils-precedence|__editable__\..*|_virtualenv|casegate.*|a1_coverage)\.pth$"
    )
    dirs = {Path(p) for p in site.getsitepackages()} | {Path(sys.prefix)}
    found = sorted(
        p.name for d in dirs if d.is_dir() for p in d.glob("*.pth") if not allowed.match(p.name)
    )
    assert found == []
