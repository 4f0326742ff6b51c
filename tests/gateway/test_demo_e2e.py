"""`casegate demo` against `casegate serve` on its embedded default (no config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.kit.gateway import ROOT, GatewayProcess, free_port


def demo(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_demo_walks_a_support_morning(tmp_path: Path) -> None:
    gw = GatewayProcess.start(tmp_path, None)
    try:
        run = demo(tmp_path, "--url", gw.url, "--case", "CASE-DEMO-1")
    finally:
        gw.stop()
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "not available in this build" not in out
    secrets = (tmp_path / "casegate-demo.env").read_text()
    for line in secrets.splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.partition("=")[2] not in out  # no credential in the transcript
    console = gw.url + "/console"
    for expected in (
        "PII redacted before the model saw it: EMAIL x1, PHONE x1",
        "stripped: email, loyalty_notes",
        "refused 403 ineligible, rule 'ai-assist-consent'",
        'allowed tool call returned: set_priority({"priority":"P2"})',
        "close_account was removed before the call went upstream",
        "blocked tool call: route_to_queue",
        "support app polls GET /v1/drafts/",
        ": approved",
        "a triage call now: 503 kill_switch_engaged",
        "the same call again: 200 allowed",
        "calls recorded for CASE-DEMO-1",
        "outcome resolved_first_contact",
        "manual_override_rate: 1.0",
        f"console: {console}/switches",
        f"console: {console}/drafts?status=approved",
        f"console: {console}/lineage?case_id=CASE-DEMO-1",
        f"console: {console}/scorecard",
        "Done.",
    ):
        assert expected in out, expected


def test_demo_says_what_is_missing(tmp_path: Path) -> None:
    run = demo(tmp_path, "--url", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert "casegate-demo.env not found" in run.stdout
    (tmp_path / "casegate-demo.env").write_text(
        "CASEGATE_DEMO_CLIENT_KEY=a\nCASEGATE_DEMO_OPERATOR_TOKEN=b\n"
    )
    run = demo(tmp_path, "--url", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert "does not answer" in run.stdout and "casegate serve" in run.stdout
