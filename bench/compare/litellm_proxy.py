"""The LiteLLM proxy under comparison: its own venv, its config, its command line.

    python -m bench.compare --setup      # create bench/.venv-litellm if missing

The proxy is installed in ``bench/.venv-litellm`` (git-ignored), apart from the
project's venv, at the newest litellm version whose ``[proxy]`` extra installs from the
configured registry: versions are tried newest first (``pip index versions litellm``)
and the first that installs is kept (1.110.x requires ``litellm-proxy``, which the
registry may not carry). It runs with no database and one worker, routing the model
name ``gpt-bench`` to the stub as ``openai/gpt-bench`` with ``api_base``; the cost map
is read locally (``LITELLM_LOCAL_MODEL_COST_MAP``) so nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "bench" / ".venv-litellm"
MAX_TRIES = 20
MODEL = "gpt-bench"


def python() -> Path:
    return VENV / "bin" / "python"


def executable() -> Path:
    return VENV / "bin" / "litellm"


def installed_version() -> str | None:
    if not python().exists():
        return None
    out = subprocess.run(
        [str(python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or None if out.returncode == 0 else None


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python()), "-m", "pip", *args], capture_output=True, text=True, check=False
    )


def setup(log: Path | None = None) -> str:
    """Create the venv if missing and install the newest installable ``litellm[proxy]``.

    Returns the installed version; raises ``RuntimeError`` when none installs.
    """
    have = installed_version()
    if have and executable().exists():
        return have
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    listed = _pip("index", "versions", "litellm")
    match = re.search(r"Available versions: (.*)", listed.stdout)
    if not match:
        raise RuntimeError(
            f"pip index versions litellm: {listed.stdout[-300:]}{listed.stderr[-300:]}"
        )
    versions = [v.strip() for v in match.group(1).split(",")]
    failures: list[str] = []
    for version in versions[:MAX_TRIES]:
        print(f"litellm setup: trying litellm[proxy]=={version}", file=sys.stderr)
        res = _pip("install", f"litellm[proxy]=={version}")
        if log is not None:
            with log.open("a") as out:
                out.write(
                    f"== litellm[proxy]=={version}\n{res.stdout[-3000:]}{res.stderr[-3000:]}\n"
                )
        if res.returncode == 0 and executable().exists():
            print(f"litellm setup: installed {version} in {VENV}", file=sys.stderr)
            return version
        lines = res.stderr.strip().splitlines() or ["?"]
        reason = next((ln for ln in lines if "No matching distribution" in ln), lines[-1])
        failures.append(f"{version}: {reason}")
    raise RuntimeError("no litellm[proxy] version installed:\n" + "\n".join(failures))


def config(stub_port: int) -> str:
    """The proxy's config.yaml (JSON is YAML): one model name routed to the stub."""
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": f"http://127.0.0.1:{stub_port}/v1",
                        "api_key": "os.environ/BENCH_UPSTREAM_KEY",
                    },
                }
            ],
            "litellm_settings": {"num_retries": 0, "request_timeout": 30, "telemetry": False},
        },
        indent=2,
    )


def command(config_path: Path, port: int) -> list[str]:
    return [
        str(executable()),
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def environment(base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the cost map from GitHub
    env["LITELLM_LOG"] = "ERROR"
    env.pop("DATABASE_URL", None)
    return env
