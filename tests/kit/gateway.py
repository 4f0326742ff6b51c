"""Run a real ``casegate serve`` subprocess for end-to-end tests.

Usage::

    gw = GatewayProcess.start(tmp_path, config_dict, env={"HELPDESK_KEY": "..."})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=...)
    gw.stop()        # SIGTERM, then SIGKILL after a grace period; gw.kill() is SIGKILL

The gateway runs exactly as users run it (``python -m gateway.cli serve``), on a free
127.0.0.1 port, with its output captured to ``gateway.log`` beside the config.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["GatewayProcess", "free_port"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        workdir: Path,
        config: dict[str, Any] | None,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
        wait: bool = True,
        timeout_s: float = 30.0,
    ) -> GatewayProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "gateway.cli", "serve", "--workers", str(workers)]
        if config is not None:
            cfg = workdir / "casegate.yaml"
            cfg.write_text(yaml.safe_dump(config, sort_keys=False))
            args += ["--config", str(cfg)]
        port = port or free_port()
        args += ["--port", str(port)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CASEGATE_", "OTEL_"))}
        full_env.update(env or {})
        full_env.setdefault("PYTHONPATH", str(ROOT))
        log_path = workdir / "gateway.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            args,
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        gw = cls(proc, port, workdir, log_path, full_env)
        if wait:
            gw.wait_ready(timeout_s)
        return gw

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway not ready after {timeout_s}s:\n{self.log()}")

    def stop(self, grace_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
