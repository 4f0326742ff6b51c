"""Seeded identifiers never reach the provider; pseudonyms are stable within a case."""

from __future__ import annotations

import sqlite3
from typing import Any

import openai

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import CONTEXT, casegate, headers
from tests.kit.stub import Reply, UpstreamStub

SEEDS = {
    "EMAIL": "ann.doe@example.com",
    "PHONE": "+44 20 7946 0958",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN": "GB82 WEST 1234 5698 7654 32",
    "IP_ADDRESS": "203.0.113.42",
    "US_SSN": "123-45-6789",
    "UK_NINO": "AB 12 34 56 C",
}


def test_seeded_identifiers_never_reach_the_provider(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    gw = start_gateway(gateway_config(upstream.url))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=creds.helpdesk, max_retries=0)
    text = "Hi, details: " + "; ".join(f"{k.lower()} {v}" for k, v in SEEDS.items())
    messages: list[Any] = [
        {"role": "system", "content": "You triage support cases."},
        {"role": "user", "content": [{"type": "text", "text": text}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "arguments": '{"email": "ann.doe\\u0040example.com"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"customer phone {SEEDS['PHONE']}"},
        {"role": "user", "content": "mail ann.doe [at] example [dot] com\u200b please"},
    ]
    context = {**CONTEXT, "language": "en", "email": SEEDS["EMAIL"], "home_address": "1 High St"}
    done = client.chat.completions.create(
        model="support-default",
        messages=messages,
        extra_headers=headers(case_id="CASE-PII"),
        extra_body=casegate(context=context),
    )
    (req,) = upstream.chat_requests
    sent = req.body.decode()
    for value in SEEDS.values():
        assert value not in sent
        assert value.replace(" ", "") not in sent
    assert "ann.doe" not in sent and "High St" not in sent and "home_address" not in sent
    assert "\u200b" not in sent
    assert "<EMAIL_1>" in sent
    meta = (done.model_extra or {})["casegate"]
    assert set(meta["redactions"]) == set(SEEDS)
    assert meta["fields"]["stripped"] == ["email", "home_address"]


def test_placeholders_are_stable_across_turns_and_restored(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    gw = start_gateway(gateway_config(upstream.url))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=creds.helpdesk, max_retries=0)

    def ask(case: str, text: str, reply: str | None = None, stream: bool = False) -> str:
        if reply is not None:
            upstream.script(Reply.chunks([reply[:9], reply[9:]]) if stream else Reply.text(reply))
        kwargs: dict[str, Any] = dict(
            model="support-default",
            messages=[{"role": "user", "content": text}],
            extra_headers=headers(case_id=case),
            extra_body=casegate(),
        )
        if stream:
            return "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(stream=True, **kwargs)
                if c.choices
            )
        return client.chat.completions.create(**kwargs).choices[0].message.content or ""

    ask("CASE-A", "I am a@one.example")
    ask("CASE-A", "Also b@two.example, and again a@one.example")
    ask("CASE-B", "I am b@two.example")
    sent = [r.json["messages"][-1]["content"] for r in upstream.chat_requests]
    assert sent == ["I am <EMAIL_1>", "Also <EMAIL_2>, and again <EMAIL_1>", "I am <EMAIL_1>"]
    # restore_in_response (triage): the agent sees the values; only the case's own values
    assert (
        ask("CASE-A", "x", reply="Write to <EMAIL_2> or <EMAIL_1>")
        == "Write to b@two.example or a@one.example"
    )
    assert ask("CASE-B", "x", reply="Write to <EMAIL_2> now") == "Write to <EMAIL_2> now"
    # a placeholder split across stream chunks is restored too
    assert (
        ask("CASE-A", "x", reply="Mail <EMAIL_1> today", stream=True) == "Mail a@one.example today"
    )
    # the maps are stored encrypted
    db = sqlite3.connect(gw.workdir / "casegate.db")
    blobs = b"".join(r[0] for r in db.execute("SELECT blob FROM pseudonym_vaults"))
    assert len(blobs) > 0 and b"one.example" not in blobs and b"two.example" not in blobs
