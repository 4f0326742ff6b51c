"""The console over plain HTTP: sessions, CSRF, roles on direct posts, security headers.

A real `casegate serve` with the stub; the browser tests are test_console_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ALL_SECRETS, Credentials, gateway_config, new_key
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub


class ConsoleGateway:
    """One gateway with an operator per role, and helpers to act as each."""

    def __init__(self, gw: GatewayProcess, creds: Credentials, tokens: dict[str, str]) -> None:
        self.gw = gw
        self.url = gw.url
        self.creds = creds
        self.tokens = tokens  # operator name -> token
        self.clients: list[httpx.Client] = []

    def new_client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=15, follow_redirects=False)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.gw.stop()

    def chat(self, use_case: str, case_id: str, text: str = "Hello", **hdrs: str) -> httpx.Response:
        body = {"model": "support-default", "messages": user(text)}
        body.update(casegate(context={"product_id": "P-100", "account_status": "active"}))
        return httpx.post(
            self.url + "/v1/chat/completions",
            json=body,
            headers={
                "Authorization": f"Bearer {self.creds.helpdesk}",
                **headers(use_case, case_id=case_id, **hdrs),
            },
            timeout=15,
        )

    def draft(self, case_id: str, text: str = "Please refund me") -> str:
        resp = self.chat("reply_drafting", case_id, text)
        assert resp.status_code == 200, resp.text
        draft_id: str = resp.json()["casegate"]["approval"]["id"]
        return draft_id

    def client_get(self, path: str) -> httpx.Response:
        return httpx.get(
            self.url + path, headers={"Authorization": f"Bearer {self.creds.helpdesk}"}, timeout=10
        )

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            self.url + path,
            json=json,
            headers={"Authorization": f"Bearer {self.tokens['oncall']}"},
            timeout=10,
        )

    def session(self, operator: str) -> httpx.Client:
        """An HTTP client signed in to the console as ``operator``."""
        client = self.new_client()
        form = client.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        resp = client.post(
            "/console/login",
            data={"token": self.tokens[operator], "csrf": csrf.group(1), "next": "/console"},
        )
        assert resp.status_code == 303, resp.text
        return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def start_console_gateway(workdir: Path, stub: UpstreamStub) -> ConsoleGateway:
    creds = Credentials()
    tokens = {
        "oncall": creds.oncall,
        "approver": new_key("op-approver"),
        "responder": new_key("op-responder"),
        "auditor": new_key("op-auditor"),
        "chief": new_key("op-chief"),
    }
    ALL_SECRETS.update(tokens.values())
    config = gateway_config(stub.url)
    config["operators"] += [
        {"name": "approver", "token_env": "APPROVER_TOKEN", "roles": ["approver"]},
        {"name": "responder", "token_env": "RESPONDER_TOKEN", "roles": ["incident_responder"]},
        {"name": "auditor", "token_env": "AUDITOR_TOKEN", "roles": ["auditor"]},
        {"name": "chief", "token_env": "CHIEF_TOKEN", "roles": ["admin"]},
    ]
    env = {
        **creds.env(),
        "APPROVER_TOKEN": tokens["approver"],
        "RESPONDER_TOKEN": tokens["responder"],
        "AUDITOR_TOKEN": tokens["auditor"],
        "CHIEF_TOKEN": tokens["chief"],
    }
    gw = GatewayProcess.start(workdir, config, env=env)
    return ConsoleGateway(gw, creds, tokens)


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: UpstreamStub
) -> Iterator[ConsoleGateway]:
    cg = start_console_gateway(tmp_path_factory.mktemp("console-http"), upstream_server)
    try:
        yield cg
    finally:
        cg.close()


def engaged(console: ConsoleGateway) -> list[str]:
    return [s["scope"] for s in console.admin("GET", "/admin/kill-switches").json()["switches"]]


# -- sign-in and sessions ------------------------------------------------------------


def test_pages_need_a_session(console: ConsoleGateway) -> None:
    resp = httpx.get(console.url + "/console/switches", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("/console/login?next=/console/switches")
    live = httpx.get(console.url + "/console/switches/live")
    assert live.status_code == 401


def test_sign_in_keeps_no_token_and_sets_strict_cookie_flags(console: ConsoleGateway) -> None:
    client = console.new_client()
    csrf = csrf_of(client.get("/console/login").text)
    bad = client.post("/console/login", data={"token": "nope", "csrf": csrf})
    assert bad.status_code == 401
    assert "Unknown operator token" in bad.text
    csrf = csrf_of(client.get("/console/login").text)
    ok = client.post("/console/login", data={"token": console.tokens["chief"], "csrf": csrf})
    assert ok.status_code == 303
    cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("casegate_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here
    assert console.tokens["chief"] not in cookie
    # behind a TLS-terminating proxy the cookie is Secure
    fresh = console.new_client()
    csrf = csrf_of(fresh.get("/console/login").text)
    tls = fresh.post(
        "/console/login",
        data={"token": console.tokens["chief"], "csrf": csrf},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in tls.headers["set-cookie"]
    # a tampered cookie is no session
    value = client.cookies["casegate_console"]
    client.cookies.set("casegate_console", value[:-2] + "xx", path="/console")
    assert client.get("/console/switches").status_code == 303


def test_sign_in_form_needs_its_csrf_cookie(console: ConsoleGateway) -> None:
    resp = httpx.post(
        console.url + "/console/login",
        data={"token": console.tokens["chief"], "csrf": "forged"},
        follow_redirects=False,
    )
    assert resp.status_code == 403
    assert "casegate_console=" not in resp.headers.get("set-cookie", "")


def test_sign_out_ends_the_session(console: ConsoleGateway) -> None:
    client = console.session("chief")
    page = client.get("/console/switches")
    out = client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert client.get("/console/switches").status_code == 303


def test_security_headers_on_every_page(console: ConsoleGateway) -> None:
    client = console.session("chief")
    for path in (
        "/console/login",
        "/console/switches",
        "/console/drafts",
        "/console/lineage",
        "/console/scorecard",
        "/console/static/console.js",
    ):
        resp = (console.new_client() if path == "/console/login" else client).get(path)
        assert resp.status_code == 200, path
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
    page = client.get("/console/switches").text
    assert "<script>" not in page and "http://" not in page.replace(console.url, "")
    assert client.get("/console/static/../app.py").status_code == 404


# -- CSRF and roles on direct posts --------------------------------------------------


def test_a_state_changing_post_without_the_csrf_token_is_refused(console: ConsoleGateway) -> None:
    client = console.session("responder")
    form = {"scope": "global", "mode": "halt", "reason": "csrf test", "confirm": "yes"}
    assert client.post("/console/switches/engage", data=form).status_code == 403
    wrong = client.post("/console/switches/engage", data={**form, "csrf": "x" * 43})
    assert wrong.status_code == 403
    assert "CSRF" in wrong.text
    # another session's token does not fit this session
    other = console.session("chief")
    foreign = csrf_of(other.get("/console/switches").text)
    assert (
        client.post("/console/switches/engage", data={**form, "csrf": foreign}).status_code == 403
    )
    assert "global" not in engaged(console)
    draft_id = console.draft("CASE-CSRF")
    approver = console.session("approver")
    resp = approver.post(f"/console/drafts/{draft_id}/approve", data={"action": "approve"})
    assert resp.status_code == 403
    assert console.client_get(f"/v1/drafts/{draft_id}").json()["status"] == "pending"


def test_an_approver_cannot_flip_switches_even_by_posting_the_form(
    console: ConsoleGateway,
) -> None:
    client = console.session("approver")
    page = client.get("/console/switches")
    assert page.status_code == 403
    drafts = client.get("/console/drafts")
    assert drafts.status_code == 200
    assert 'href="/console/switches"' not in drafts.text  # no link to a page it cannot use
    csrf = csrf_of(drafts.text)
    form = {
        "scope": "global",
        "mode": "halt",
        "reason": "role test",
        "confirm": "yes",
        "csrf": csrf,
    }
    resp = client.post("/console/switches/engage", data=form)
    assert resp.status_code == 403
    assert "incident_responder" in resp.text
    assert "global" not in engaged(console)


def test_an_incident_responder_cannot_approve_even_by_posting_the_form(
    console: ConsoleGateway,
) -> None:
    draft_id = console.draft("CASE-ROLE")
    client = console.session("responder")
    assert client.get("/console/drafts").status_code == 403
    csrf = csrf_of(client.get("/console/switches").text)
    for path, form in (
        (f"/console/drafts/{draft_id}/approve", {"action": "approve"}),
        (f"/console/drafts/{draft_id}/reject", {"reason": "no"}),
    ):
        resp = client.post(path, data={**form, "csrf": csrf})
        assert resp.status_code == 403
        assert "approver" in resp.text
    assert console.client_get(f"/v1/drafts/{draft_id}").json()["status"] == "pending"
    assert client.get("/console/lineage").status_code == 403
    assert client.get("/console/scorecard").status_code == 403


def test_engage_needs_a_reason_and_a_confirmation(console: ConsoleGateway) -> None:
    client = console.session("responder")
    csrf = csrf_of(client.get("/console/switches").text)
    base = {"scope": "route:support-default", "mode": "degrade", "csrf": csrf}
    no_reason = client.post("/console/switches/engage", data={**base, "reason": " "})
    assert no_reason.status_code == 400
    ask = client.post("/console/switches/engage", data={**base, "reason": "flaky"})
    assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text
    assert "route:support-default" not in engaged(console)
    bad = client.post(
        "/console/switches/engage",
        data={**base, "scope": "use_case:nope", "reason": "x", "confirm": "yes"},
    )
    assert bad.status_code == 400
    assert "valid scopes" in bad.text  # the operator API's own message
    done = client.post(
        "/console/switches/engage", data={**base, "reason": "flaky", "confirm": "yes"}
    )
    assert done.status_code == 303
    assert "route:support-default" in engaged(console)
    ask = client.post(
        "/console/switches/release", data={"scope": "route:support-default", "csrf": csrf}
    )
    assert ask.status_code == 200 and 'name="reason"' in ask.text
    assert "route:support-default" in engaged(console)
    done = client.post(
        "/console/switches/release",
        data={"scope": "route:support-default", "csrf": csrf, "reason": "ok", "confirm": "yes"},
    )
    assert done.status_code == 303
    assert "route:support-default" not in engaged(console)
    # the flips are the operator API's own lineage events, by the console's operator
    events = console.admin("GET", "/admin/lineage/export").json()["events"]
    flips = [e for e in events if e["type"] in ("switch.engaged", "switch.released")]
    assert [e["data"]["by"] for e in flips[-2:]] == ["responder", "responder"]


def test_draft_texts_are_escaped(console: ConsoleGateway) -> None:
    console.draft("CASE-XSS", "<script>alert('x')</script> <img src=x onerror=alert(1)>")
    page = console.session("approver").get("/console/drafts").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
