"""The console in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium)
against a real `casegate serve` and the stub. A screenshot of each page goes to
test-artifacts/console/ (git-ignored).

Chromium is installed by `.ci/run` (apt-get, package `chromium`); `playwright install`
cannot download browsers here. Without Chromium (or Playwright) these tests are skipped
locally and FAIL under CASEGATE_REQUIRE_BACKENDS=1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE
from tests.gateway.test_console_http import ConsoleGateway, start_console_gateway
from tests.kit.stub import UpstreamStub

CHROMIUM = os.environ.get("CASEGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def _need(what: str, ok: bool) -> None:
    if ok:
        return
    if REQUIRE:
        pytest.fail(f"{what} is missing (CASEGATE_REQUIRE_BACKENDS=1)")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright (pip install playwright)", False)
        raise
    _need(f"Chromium at {CHROMIUM} (apt-get install chromium)", os.access(CHROMIUM, os.X_OK))
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def console(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, upstream_server: UpstreamStub
) -> Iterator[ConsoleGateway]:
    cg = start_console_gateway(tmp_path_factory.mktemp("console-browser"), upstream_server)
    try:
        yield cg
    finally:
        cg.close()


def sign_in(browser: Any, console: ConsoleGateway, operator: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.casegate_errors = errors
    page.goto(console.url + "/console")
    page.fill("#token", console.tokens[operator])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def done(page: Any) -> None:
    """No script error and no CSP violation on the page."""
    assert page.casegate_errors == []
    page.context.close()


def test_kill_switch_engage_refuses_calls_then_release(
    browser: Any, console: ConsoleGateway
) -> None:
    page = sign_in(browser, console, "responder")
    assert page.url.endswith("/console/switches")
    assert page.locator("nav.top a").all_inner_texts() == ["Kill switches"]
    page.fill("#scope", "use_case:triage")
    page.select_option("#mode", "halt")
    page.fill("#reason", "bad answers in triage")
    page.click("#engage button[type=submit]")
    assert "Engage" in page.inner_text("form.confirm .question")
    assert console.chat("triage", "CASE-UI-1").status_code == 200  # not yet: a confirmation step
    page.click("#confirm")
    row = page.locator('tr[data-scope="use_case:triage"]')
    assert row.locator("td").nth(2).inner_text() == "bad answers in triage"
    assert row.locator("td").nth(3).inner_text() == "responder"
    refused = console.chat("triage", "CASE-UI-1")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "kill_switch_engaged"
    shot(page, "switches")

    # a flip made elsewhere (the operator API, as the CLI does) shows up by itself
    resp = console.admin(
        "POST",
        "/admin/kill-switches",
        {"scope": "tool:set_priority", "mode": "halt", "reason": "cli"},
    )
    assert resp.status_code == 200
    page.wait_for_selector('tr[data-scope="tool:set_priority"]', timeout=10_000)

    for scope in ("use_case:triage", "tool:set_priority"):
        page.click(f'tr[data-scope="{scope}"] button')
        page.fill("#reason", "fixed")
        page.click("#confirm")
        assert page.locator(".notice.ok").inner_text() == f"Released {scope}."
    assert page.locator("#switch-rows tr.empty").count() == 1
    assert console.chat("triage", "CASE-UI-1").status_code == 200
    done(page)


def test_approve_edit_and_reject_drafts_with_the_keyboard(
    browser: Any, console: ConsoleGateway
) -> None:
    ids = [
        console.draft(f"CASE-Q{i}", f"Question {i}: refund to ann{i}@example.com") for i in range(3)
    ]
    page = sign_in(browser, console, "approver")
    assert page.url.endswith("/console/drafts")
    assert "j / k" in page.inner_text("details.shortcuts")
    listed = page.locator("article.draft.pending header code").all_inner_texts()
    assert [i for i in listed if i in ids] == ids  # oldest first
    first = page.locator("article.draft.pending").first
    assert "Question 0" in first.locator("blockquote.turn").inner_text()
    assert "EMAIL" in first.inner_text()  # the redaction summary
    shot(page, "drafts")

    def select(draft_id: str) -> None:
        position = (
            page.locator("article.draft.pending header code").all_inner_texts().index(draft_id)
        )
        for _ in range(position):
            page.keyboard.press("j")

    select(ids[0])
    page.keyboard.press("a")
    page.wait_for_selector(".notice.ok")
    assert console.client_get(f"/v1/drafts/{ids[0]}").json()["status"] == "approved"

    select(ids[1])
    page.keyboard.press("e")
    page.keyboard.press("Control+a")
    page.keyboard.type("Hello,\nwe refunded you.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".notice.ok")
    assert "edit" in page.inner_text(".notice.ok")
    approved = console.client_get(f"/v1/drafts/{ids[1]}").json()
    assert approved["status"] == "approved"
    assert approved["text"] == "Hello,\nwe refunded you."

    select(ids[2])
    page.keyboard.press("r")
    page.keyboard.type("wrong tone")
    page.keyboard.press("Enter")
    page.wait_for_selector(".notice.ok")
    assert console.client_get(f"/v1/drafts/{ids[2]}").json()["status"] == "rejected"

    page.goto(console.url + "/console/drafts?status=approved")
    assert ids[1] in page.inner_text("#queue")
    shot(page, "drafts-approved")
    done(page)


def test_case_lineage_and_scorecard(browser: Any, console: ConsoleGateway) -> None:
    case = "CASE-UI-LINEAGE"
    first = console.chat("triage", case, "mail me at ann@example.com", queue="billing")
    assert first.status_code == 200
    again = console.chat("triage", case, "again", queue="billing", segment="premium")
    assert again.status_code == 200
    console.draft(case)
    page = sign_in(browser, console, "auditor")
    assert page.url.endswith("/console/lineage")
    page.fill("#case_id", case)
    page.click("form.search button")
    page.wait_for_selector("ol.timeline")
    calls = page.locator("ol.timeline li.call")
    assert calls.count() == 3
    text = page.inner_text("ol.timeline")
    assert "EMAIL" in text and "product_id" in text and "pending_approval" in text
    assert "ann@example.com" not in page.content()
    assert "chain verified" in page.inner_text("#chain-badge")
    shot(page, "lineage")

    page.goto(console.url + "/console/scorecard")
    assert page.locator("svg.chart").count() >= 6
    weekly = page.locator('table.weekly tr[data-figure="calls"] td')
    # this test's three calls, and any the module's other tests made before it
    assert int(weekly.last.inner_text().replace(",", "")) >= 3
    assert "billing" in page.inner_text("#by-queue")
    assert "premium" in page.inner_text("#by-segment")
    shot(page, "scorecard")
    done(page)


def test_each_role_sees_only_its_pages(browser: Any, console: ConsoleGateway) -> None:
    page = sign_in(browser, console, "approver")
    assert page.locator("nav.top a").all_inner_texts() == ["Approvals"]
    page.goto(console.url + "/console/switches")
    assert "lacks the 'incident_responder' role" in page.inner_text("main")
    assert page.locator("#engage").count() == 0
    page.context.close()

    page = sign_in(browser, console, "responder")
    page.goto(console.url + "/console/drafts")
    assert "lacks the 'approver' role" in page.inner_text("main")
    page.context.close()

    page = sign_in(browser, console, "chief")
    assert page.locator("nav.top a").all_inner_texts() == [
        "Kill switches",
        "Approvals",
        "Case lineage",
        "Scorecard",
    ]
    page.click("text=Sign out")
    assert re.search(r"/console/login", page.url)
    shot(page, "sign-in")
    done(page)
