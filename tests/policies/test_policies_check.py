"""`render_check`: the text behind ``casegate policy check FILE [--facts f.json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from policies import FactsError, default_bundle_path, load_bundle, load_bundle_file, render_check

LOADED = load_bundle_file(default_bundle_path())
FULL = load_bundle_file(Path(__file__).parent / "testdata" / "valid" / "full.yaml")
GOOD: dict[str, Any] = {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"}

TRIAGE = f"""\
policy bundle 2026-11-28.1
  sha256: {LOADED.sha256}
  use cases: triage, reply_drafting

use case triage
  route: support-default
  data set:
    required: product_id, account_status
    optional: recent_case_category, language, order.items[].sku
  redaction: CREDIT_CARD, EMAIL, IBAN, IP_ADDRESS, PHONE, UK_NINO, US_SSN
    restore in response: yes
    pseudonyms kept for: 30d
  eligibility (every rule must hold):
    1. consent.ai_assist is true  [ai-assist-consent]
    2. customer.authenticated is true
    3. customer.region in ["GB", "IE", "US"]
  action classes (default recommendation):
    recommendation
    draft: approval required, expires after 24h
    automation: on violation downgrade
      tool set_priority
        priority: one of ["P2", "P3"]
      tool route_to_queue
        queue: one of ["billing", "shipping"]
        note (optional): type string, max_length 200
  max_tokens: 800
  unscanned content parts allowed: (none)
"""


def test_describes_every_use_case() -> None:
    text = render_check(LOADED)
    assert text.startswith(TRIAGE + "\nuse case reply_drafting\n")
    assert "  action classes (default draft):\n    recommendation\n    draft:" in text
    assert "  max_tokens: 1200\n" in text
    assert "decision" not in text
    assert text.endswith("\n")


def test_one_use_case() -> None:
    assert render_check(LOADED, use_case="triage") == TRIAGE


def test_every_option_is_shown() -> None:
    text = render_check(FULL, use_case="triage")
    for line in [
        "    optional: tags[], customer.profile.tier, language",
        "    pseudonyms kept for: 7d",
        "    2. customer.authenticated equals true",
        '    4. customer.attributes.tier not in ["blocked", 0, false, null]',
        '    6. request.segment equals "consumer"  [consumer-only]',
        "    draft: approval required, expires after 90m",
        "    automation: on violation block",
        "      tool escalate\n        (no arguments)",
        "        amount: type number, min 0, max 50.5",
        '        currency (optional): one of ["GBP", "EUR"], type string',
        '        order_id: type string, pattern "O-[0-9]{6}", min_length 8, max_length 8',
        "        level: one of [1, 2, true, null, 2.5]",
        "  unscanned content parts allowed: file, image_url, input_audio",
    ]:
        assert line in text, line
    other = render_check(FULL, use_case="billing_lookup")
    assert "  eligibility: every customer\n" in other
    assert "  max_tokens: (no cap)\n" in other
    assert "    required: (none)\n" in other
    assert "  redaction: (no entities)\n" in other
    assert "    restore in response: no\n" in other


def test_facts_give_a_decision_per_use_case() -> None:
    text = render_check(LOADED, GOOD)
    assert text.count("  decision: ") == 2
    assert (
        "  decision: allowed; class recommendation -> recommendation\n    tools upstream: (none)\n"
        in text
    )
    assert "  decision: allowed, pending approval; class draft -> draft\n" in text


def test_facts_choose_use_case_and_class() -> None:
    text = render_check(LOADED, {**GOOD, "use_case": "triage", "action_class": "automation"})
    assert "use case reply_drafting" not in text
    assert text.endswith(
        "  decision: allowed; class automation -> automation\n"
        "    tools upstream: set_priority, route_to_queue\n"
    )


def test_keywords_override_facts() -> None:
    text = render_check(
        LOADED,
        {**GOOD, "use_case": "triage"},
        use_case="reply_drafting",
        action_class="recommendation",
    )
    assert "use case triage" not in text
    assert "  decision: allowed; class recommendation -> recommendation\n" in text


def test_refusal_is_shown_with_its_param() -> None:
    text = render_check(LOADED, {**GOOD, "region": "FR"}, use_case="triage")
    assert text.endswith(
        "  decision: refused 403 ineligible, param customer.region: "
        "eligibility rule 'customer.region' is not met\n"
    )
    text = render_check(LOADED, {}, use_case="reply_drafting")
    assert "param ai-assist-consent" in text


def test_class_the_use_case_lacks() -> None:
    text = render_check(LOADED, GOOD, use_case="reply_drafting", action_class="automation")
    assert "refused 403 action_class_not_permitted, param X-Casegate-Action-Class" in text


def test_switches_in_facts() -> None:
    facts = {
        **GOOD,
        "action_class": "automation",
        "queue": "billing",
        "segment": "smb",
        "switches": [
            {"scope": "use_case:triage", "mode": "degrade"},
            {"scope": "Tool:set_priority", "mode": "halt"},
            {"scope": "model:openai/gpt-4o-mini", "mode": "halt"},
        ],
    }
    text = render_check(LOADED, facts, use_case="triage")
    assert (
        "  switches: use_case:triage (degrade), tool:set_priority (halt), "
        "model:openai/gpt-4o-mini (halt)\n"
    ) in text
    assert text.endswith(
        "  decision: degraded, pending approval; class automation -> draft\n"
        "    tools upstream: (none)\n"
        "    switches: use_case:triage\n"
    )


def test_halt_in_facts() -> None:
    text = render_check(LOADED, {**GOOD, "switches": [{"scope": "global", "mode": "halt"}]})
    assert (
        text.count("refused 503 kill_switch_engaged: kill switch 'global' is engaged (halt)") == 2
    )
    assert text.count("    switches: global\n") == 2


@pytest.mark.parametrize(
    ("facts", "path"),
    [
        ({"email": "x"}, "email"),
        ({"authenticated": "yes"}, "customer.authenticated"),
        ({"queue": 3}, "queue"),
        ({"use_case": ["triage"]}, "use_case"),
        ({"switches": {"scope": "global"}}, "switches"),
        ({"switches": [{"scope": "global"}]}, "switches[0]"),
        ({"switches": ["global"]}, "switches[0]"),
        ({"switches": [{"scope": 1, "mode": "halt"}]}, "switches[0].scope"),
        ({"switches": [{"scope": "global", "mode": "stop"}]}, "switches[0].mode"),
        ({"switches": [{"scope": "tool:nope", "mode": "halt"}]}, "switches[0].scope"),
        ({"use_case": "billing"}, "use_case"),
    ],
)
def test_bad_facts(facts: dict[str, Any], path: str) -> None:
    with pytest.raises(FactsError) as info:
        render_check(LOADED, facts)
    assert info.value.path == path


def test_facts_must_be_an_object() -> None:
    with pytest.raises(FactsError) as info:
        render_check(LOADED, ["authenticated"])  # type: ignore[arg-type]
    assert info.value.path == "(facts)"


def test_unknown_use_case_without_facts() -> None:
    with pytest.raises(FactsError, match="'billing' is not in this bundle"):
        render_check(LOADED, use_case="billing")


def test_rendering_a_minimal_bundle() -> None:
    loaded = load_bundle(
        "version: m\nuse_cases:\n  u:\n    route: r\n    redaction: {entities: []}\n"
        "    default_action_class: recommendation\n    action_classes: {recommendation: {}}\n"
    )
    text = render_check(loaded)
    assert "  action classes (default recommendation):\n    recommendation\n  max_tokens" in text


def test_use_case_without_recommendation() -> None:
    loaded = load_bundle_file(Path(__file__).parent / "testdata" / "valid" / "draft_only.yaml")
    text = render_check(loaded)
    assert "  action classes (default draft):\n    draft: approval required" in text
