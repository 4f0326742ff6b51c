"""The Dockerfile, checked statically (no Docker engine runs on this machine).

Parsed into its stages and instructions: a multi-stage build on the slim Python 3.11
base, the hashed lock installed with ``--require-hashes`` then the project with
``--no-deps``, a numeric non-root USER matching the Kubernetes ``runAsUser``, no
secret-like ENV or ARG, a HEALTHCHECK on /healthz without curl, and a build context
that cannot carry local state or secrets.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)

Instruction = tuple[str, str]  # (KEYWORD, arguments with continuations joined)


def parse(text: str) -> list[list[Instruction]]:
    """Stages (split at FROM), each a list of instructions."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[list[Instruction]] = [[]]
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM" and stages[-1] and any(k == "FROM" for k, _ in stages[-1]):
            stages.append([])
        stages[-1].append((keyword, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse((DEPLOY / "Dockerfile").read_text())


def _all(stages: list[list[Instruction]], keyword: str) -> list[str]:
    return [args for stage in stages for k, args in stage if k == keyword]


def test_multi_stage_on_slim_python_311(stages: list[list[Instruction]]) -> None:
    preamble_args = [a for k, a in stages[0] if k == "ARG"]
    assert "PYTHON_IMAGE=python:3.11-slim-bookworm" in preamble_args
    froms = [args for stage in stages for k, args in stage if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    runtime = stages[-1]
    copies = [a for k, a in runtime if k == "COPY"]
    assert copies == ["--from=build /opt/casegate /opt/casegate"]  # only the virtualenv


def test_lock_installed_with_hashes_then_project_without_deps(
    stages: list[list[Instruction]],
) -> None:
    build = stages[0]
    copies = [a for k, a in build if k == "COPY"]
    assert "requirements/lock.txt /tmp/lock.txt" in copies
    runs = [a for k, a in build if k == "RUN"]
    lock_run = next(r for r in runs if "lock.txt" in r)
    assert "--require-hashes -r /tmp/lock.txt" in lock_run
    wheel_run = next(r for r in runs if "casegate-*.whl" in r)
    install = wheel_run[wheel_run.index("/opt/casegate/bin/pip install") :]
    assert "--no-deps" in install.split("&&")[0]
    assert runs.index(lock_run) < runs.index(wheel_run)
    # the build backend is hashed too: no unpinned package enters the image
    build_run = next(r for r in runs if "build-requirements.txt" in r)
    assert "--require-hashes" in build_run
    pins = (DEPLOY / "build-requirements.txt").read_text()
    requirements = [line for line in pins.splitlines() if line and not line.startswith(("#", " "))]
    assert requirements and all(re.fullmatch(r"[\w.-]+==[\w.]+ \\", r) for r in requirements)
    assert pins.count("--hash=sha256:") == len(requirements)
    # the packages copied are exactly the distribution's
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {a.split()[0] for a in copies if a.split()[0] in packages}
    assert copied == packages


def test_runs_as_a_non_root_numeric_user(stages: list[list[Instruction]]) -> None:
    users = [a for k, a in stages[-1] if k == "USER"]
    assert users == ["10001:10001"]  # numeric, so Kubernetes' runAsNonRoot can verify it
    k8s = (DEPLOY / "k8s" / "base" / "deployment.yaml").read_text()
    assert "runAsUser: 10001" in k8s and "runAsGroup: 10001" in k8s
    keywords = [k for k, _ in stages[-1]]
    # nothing runs as root after the switch
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_no_secrets_baked_in(stages: list[list[Instruction]]) -> None:
    for args in _all(stages, "ENV") + _all(stages, "ARG"):
        for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", " " + args):
            assert not SECRET_NAME.search(name), f"secret-like build variable {name}"
        if "=" not in args:
            assert not SECRET_NAME.search(args), args
    for args in _all(stages, "COPY") + _all(stages, "ADD"):
        assert ".env" not in args and "keys.json" not in args and ".db" not in args, args
    assert not _all(stages, "ADD")  # ADD can fetch URLs; COPY only copies
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") - 1].startswith("#") and "*" in ignore  # deny by default
    for pattern in ("**/.env", "**/casegate.keys.json", "**/*.db", "**/casegate-demo.env"):
        assert pattern in ignore, pattern
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    copied = {a.split()[0] for a in _all(stages, "COPY") if not a.startswith("--from")}
    copied |= {
        part for a in _all(stages, "COPY") if a.startswith("pyproject") for part in a.split()[:-1]
    }
    for source in copied:  # everything COPY'd is let through the ignore file
        assert source in allowed or source + "/" in allowed, source


def test_healthcheck_and_entrypoint(stages: list[list[Instruction]]) -> None:
    (health,) = [a for k, a in stages[-1] if k == "HEALTHCHECK"]
    assert "/healthz" in health and "urllib.request" in health and "curl" not in health
    (entrypoint,) = [a for k, a in stages[-1] if k == "ENTRYPOINT"]
    (cmd,) = [a for k, a in stages[-1] if k == "CMD"]
    argv = shlex.split(entrypoint.strip("[]").replace(",", " ")) + shlex.split(
        cmd.strip("[]").replace(",", " ")
    )
    assert argv[:4] == ["casegate", "serve", "--host", "0.0.0.0"]
    assert argv[argv.index("--config") + 1] == "/etc/casegate/casegate.yaml"
    env = " ".join(a for k, a in stages[-1] if k == "ENV")
    assert "CASEGATE_CONFIG=/etc/casegate/casegate.yaml" in env
    assert [a for k, a in stages[-1] if k == "EXPOSE"] == ["8080"]
    assert [a for k, a in stages[-1] if k == "STOPSIGNAL"] == ["SIGTERM"]
