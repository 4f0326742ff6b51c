"""The runbooks (docs/runbooks/) say only what the real CLI and API accept.

Every `casegate …` line in their shell blocks parses with the CLI's own parser (the same
`--help`), and every `curl` names a method and path of the OpenAPI document. (The
commands were also run against a local gateway when the runbooks were written.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((ROOT / "docs" / "runbooks").glob("*.md"))
BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def _lines(path: Path) -> list[str]:
    out = []
    for block in BLOCK.findall(path.read_text()):
        joined = block.replace("\\\n", " ")
        out += [line.strip() for line in joined.splitlines() if line.strip()]
    return out


def _commands() -> list[tuple[str, str]]:
    return [
        (path.name, line)
        for path in RUNBOOKS
        for line in _lines(path)
        if line.startswith("casegate ")
    ]


def _curls() -> list[tuple[str, str]]:
    return [(path.name, line) for path in RUNBOOKS for line in _lines(path) if "curl " in line]


def test_the_five_runbooks_exist() -> None:
    names = {p.name for p in RUNBOOKS}
    assert names >= {
        "provider-outage.md",
        "prompt-injection-wave.md",
        "pii-leak-report.md",
        "policy-rollback.md",
        "erase-customer-data.md",
    }
    assert len(_commands()) >= 25 and len(_curls()) >= 8


@pytest.mark.parametrize(("doc", "line"), _commands(), ids=lambda v: v[:60])
def test_command_parses(doc: str, line: str) -> None:
    argv = shlex.split(line, comments=True)[1:]
    argv = [a.replace("$D", "dft_x") for a in argv]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage error
        pytest.fail(f"{doc}: {line!r} does not parse (exit {exc.code})")
    assert callable(args.func)


def _operations() -> list[tuple[str, re.Pattern[str]]]:
    ops = []
    for path, item in openapi_document()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/?]+", re.escape(path))
        ops += [(method.upper(), re.compile(pattern + r"(\?.*)?")) for method in item]
    return ops


@pytest.mark.parametrize(("doc", "line"), _curls(), ids=lambda v: v[:60])
def test_curl_names_a_documented_endpoint(doc: str, line: str) -> None:
    method = "POST" if " -d " in line else "GET"
    if "-X " in line:
        method = line.split("-X ", 1)[1].split()[0]
    found = re.search(r"\$CASEGATE_URL(/[^\"' ]*)", line)
    assert found, f"{doc}: no $CASEGATE_URL path in {line!r}"
    path = found.group(1)
    assert any(m == method and p.fullmatch(path) for m, p in _operations()), (
        f"{doc}: {method} {path} is not in /openapi.json"
    )
    if "/admin/" in path:
        assert "Authorization: Bearer $CASEGATE_TOKEN" in line, line
