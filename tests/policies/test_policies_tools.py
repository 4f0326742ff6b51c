"""Judging returned tool calls against the allowlist (DESIGN 3, "Tool calls, precisely")."""

from __future__ import annotations

import json

import pytest

from policies import ToolCall, ToolJudgement, ToolViolation, judge_tool_calls, load_bundle

BUNDLE = """\
version: tools-1
use_cases:
  triage:
    route: main
    redaction: {entities: []}
    default_action_class: automation
    action_classes:
      recommendation: {}
      draft: {}
      automation:
        tools:
          set_priority:
            arguments:
              priority: {enum: [P2, P3]}
          route_to_queue:
            arguments:
              queue: {enum: [billing, shipping]}
              note: {type: string, max_length: 20, optional: true}
          refund:
            arguments:
              amount: {type: number, min: 0, max: 50.5}
              order_id: {type: string, pattern: "O-[0-9]{6}", min_length: 8, max_length: 8}
              count: {type: integer, min: 1, max: 3, optional: true}
              notify: {type: boolean, optional: true}
              level: {enum: [1, true, null, 2.5], optional: true}
              code: {type: string, min_length: 2, optional: true}
          escalate: {}
"""

UC = load_bundle(BUNDLE).policy.use_cases["triage"]
SECRET = "jane.doe@example.com"


def call(name: str, arguments: str, id: str = "call_1") -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments)


def judge(
    *calls: ToolCall, cls: str = "automation", removed: frozenset[str] = frozenset()
) -> ToolJudgement:
    return judge_tool_calls(UC, cls, calls, removed_tools=removed)


REFUND_OK = {"amount": 10, "order_id": "O-123456"}


def refund(**changes: object) -> str:
    args = dict(REFUND_OK)
    args.update(changes)
    return json.dumps(args)


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("set_priority", '{"priority": "P2"}'),
        ("set_priority", '{"priority":"P3"}'),
        ("route_to_queue", '{"queue": "billing"}'),
        ("route_to_queue", '{"queue": "shipping", "note": "customer asked twice"}'),
        ("route_to_queue", '{"queue": "shipping", "note": ""}'),
        ("escalate", "{}"),
        ("escalate", " { } "),
        ("refund", refund()),
        ("refund", refund(amount=0)),
        ("refund", refund(amount=50.5)),
        ("refund", refund(amount=12.25)),
        ("refund", refund(count=1, notify=False, level=1)),
        ("refund", refund(count=3, notify=True, level=True)),
        ("refund", refund(level=None)),
        ("refund", refund(level=2.5)),
        ("refund", refund(code="ab")),
    ],
)
def test_allowed_calls(name: str, arguments: str) -> None:
    result = judge(call(name, arguments))
    assert result.ok
    assert result.violations == ()
    assert result.allowed == (call(name, arguments),)


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        # names: exact, no normalisation
        ("delete_account", "{}", "tool is not on the allowlist"),
        ("set_priorit\u0443", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("s\u0435t_priority", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("esc\u0430late", "{}", "tool is not on the allowlist"),
        ("set_priority ", '{"priority": "P2"}', "tool is not on the allowlist"),
        (" set_priority", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("Set_Priority", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("SET_PRIORITY", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("set_priority\u200b", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("\uff53et_priority", '{"priority": "P2"}', "tool is not on the allowlist"),
        ("", "{}", "tool is not on the allowlist"),
        # arguments: one JSON object
        ("set_priority", "priority=P2", "arguments are not valid JSON"),
        ("set_priority", "", "arguments are not valid JSON"),
        ("set_priority", '{"priority": "P2"', "arguments are not valid JSON"),
        ("set_priority", '{"priority": "P2"} {}', "arguments are not valid JSON"),
        ("set_priority", "{'priority': 'P2'}", "arguments are not valid JSON"),
        ("set_priority", '[{"priority": "P2"}]', "arguments are not a JSON object"),
        ("set_priority", '"P2"', "arguments are not a JSON object"),
        ("set_priority", "null", "arguments are not a JSON object"),
        ("set_priority", '{"priority": "P2", "priority": "P3"}', "arguments repeat a key"),
        ("set_priority", '{"priority": "P2", "x": {"a": 1, "a": 2}}', "arguments repeat a key"),
        ("refund", refund().replace("10", "NaN"), "arguments contain NaN or Infinity"),
        ("refund", refund().replace("10", "Infinity"), "arguments contain NaN or Infinity"),
        ("refund", refund().replace("10", "-Infinity"), "arguments contain NaN or Infinity"),
        ("refund", refund().replace("10", "1e400"), "arguments contain a number out of range"),
        ("refund", refund().replace("10", "1" * 5000), "arguments are not valid JSON"),
        ("set_priority", "[" * 100_000 + "]" * 100_000, "arguments are not valid JSON"),
        # keys
        (
            "set_priority",
            '{"priority": "P2", "reason": "x"}',
            "arguments contain a key that is not allowed",
        ),
        ("set_priority", '{"Priority": "P2"}', "arguments contain a key that is not allowed"),
        ("escalate", '{"now": true}', "arguments contain a key that is not allowed"),
        ("set_priority", "{}", "argument 'priority' is missing"),
        ("route_to_queue", '{"note": "hi"}', "argument 'queue' is missing"),
        ("refund", '{"amount": 1}', "argument 'order_id' is missing"),
        # enum: exact type and text
        (
            "set_priority",
            '{"priority": "P1"}',
            "argument 'priority' is not one of the allowed values",
        ),
        (
            "set_priority",
            '{"priority": "p2"}',
            "argument 'priority' is not one of the allowed values",
        ),
        (
            "set_priority",
            '{"priority": " P2"}',
            "argument 'priority' is not one of the allowed values",
        ),
        (
            "set_priority",
            '{"priority": ["P2"]}',
            "argument 'priority' is not one of the allowed values",
        ),
        (
            "set_priority",
            '{"priority": null}',
            "argument 'priority' is not one of the allowed values",
        ),
        ("refund", refund(level=2), "argument 'level' is not one of the allowed values"),
        ("refund", refund(level=1.0), "argument 'level' is not one of the allowed values"),
        ("refund", refund(level=False), "argument 'level' is not one of the allowed values"),
        ("refund", refund(level="1"), "argument 'level' is not one of the allowed values"),
        # types: bool is not a number, strings are not numbers
        ("refund", refund(amount=True), "argument 'amount' is not of type number"),
        ("refund", refund(amount="10"), "argument 'amount' is not of type number"),
        ("refund", refund(count=True), "argument 'count' is not of type integer"),
        ("refund", refund(count=2.0), "argument 'count' is not of type integer"),
        ("refund", refund(notify=1), "argument 'notify' is not of type boolean"),
        ("refund", refund(notify="true"), "argument 'notify' is not of type boolean"),
        ("refund", refund(order_id=123456), "argument 'order_id' is not of type string"),
        (
            "route_to_queue",
            '{"queue": "billing", "note": {"text": "x"}}',
            "argument 'note' is not of type string",
        ),
        # bounds and patterns
        ("refund", refund(amount=-0.01), "argument 'amount' is below 0"),
        ("refund", refund(amount=50.51), "argument 'amount' is above 50.5"),
        ("refund", refund(count=0), "argument 'count' is below 1"),
        ("refund", refund(count=4), "argument 'count' is above 3"),
        ("refund", refund(order_id="O-12345"), "argument 'order_id' is shorter than 8"),
        ("refund", refund(order_id="O-1234567"), "argument 'order_id' is longer than 8"),
        ("refund", refund(order_id="X-123456"), "argument 'order_id' does not match its pattern"),
        ("refund", refund(order_id="O-12345\n"), "argument 'order_id' does not match its pattern"),
        ("refund", refund(order_id="O-١٢٣٤٥٦"), "argument 'order_id' does not match its pattern"),
        ("refund", refund(code="a"), "argument 'code' is shorter than 2"),
        (
            "route_to_queue",
            json.dumps({"queue": "billing", "note": "x" * 21}),
            "argument 'note' is longer than 20",
        ),
    ],
)
def test_violations(name: str, arguments: str, reason: str) -> None:
    result = judge(call(name, arguments))
    assert not result.ok
    assert result.allowed == ()
    assert result.violations == (ToolViolation(index=0, name=name, reason=reason),)


def test_json_with_surrounding_whitespace_is_one_object() -> None:
    assert judge(call("set_priority", '\n {"priority": "P2"}\n')).ok


def test_arguments_that_are_not_a_string() -> None:
    result = judge(call("set_priority", {"priority": "P2"}))  # type: ignore[arg-type]
    assert result.violations[0].reason == "arguments are not a JSON string"


def test_name_that_is_not_a_string() -> None:
    result = judge(call(None, "{}"))  # type: ignore[arg-type]
    assert result.violations[0].reason == "tool is not on the allowlist"


@pytest.mark.parametrize("cls", ["recommendation", "draft"])
def test_any_call_under_a_class_without_tools(cls: str) -> None:
    result = judge(call("set_priority", '{"priority": "P2"}'), cls=cls)
    assert result.violations == (
        ToolViolation(0, "set_priority", f"no tool calls are allowed under the {cls} action class"),
    )


def test_call_to_a_removed_tool() -> None:
    result = judge(
        call("set_priority", '{"priority": "P2"}', id="a"),
        call("route_to_queue", '{"queue": "billing"}', id="b"),
        removed=frozenset({"set_priority"}),
    )
    assert result.violations == (ToolViolation(0, "set_priority", "tool is switched off"),)
    assert [c.id for c in result.allowed] == ["b"]


def test_one_bad_call_among_parallel_good_ones() -> None:
    calls = [
        call("set_priority", '{"priority": "P2"}', id="a"),
        call("route_to_queue", '{"queue": "billing"}', id="b"),
        call("set_priority", '{"priority": "P1"}', id="c"),
        call("escalate", "{}", id="d"),
    ]
    result = judge(*calls)
    assert not result.ok
    assert result.allowed == (calls[0], calls[1], calls[3])
    assert result.violations == (
        ToolViolation(2, "set_priority", "argument 'priority' is not one of the allowed values"),
    )


def test_every_call_is_judged_on_its_own() -> None:
    calls = [
        call("nope", "{}"),
        call("set_priority", "[]"),
        call("set_priority", '{"priority": "P3"}'),
    ]
    result = judge(*calls)
    assert [(v.index, v.reason) for v in result.violations] == [
        (0, "tool is not on the allowlist"),
        (1, "arguments are not a JSON object"),
    ]
    assert result.allowed == (calls[2],)


def test_no_calls_is_ok() -> None:
    assert judge() == ToolJudgement(allowed=(), violations=())
    assert judge().ok
    assert judge(cls="recommendation").ok


def test_use_case_without_automation() -> None:
    text = BUNDLE.replace("default_action_class: automation", "default_action_class: draft")
    text = text[: text.index("      automation:")]
    uc = load_bundle(text).policy.use_cases["triage"]
    result = judge_tool_calls(uc, "automation", [call("set_priority", '{"priority": "P2"}')])
    assert result.violations[0].reason == "tool is not on the allowlist"


@pytest.mark.parametrize(
    "arguments",
    [
        json.dumps({"priority": SECRET}),
        json.dumps({"priority": "P2", SECRET: "x"}),
        json.dumps({SECRET: 1, SECRET.upper(): 2}),
        '{"priority": "' + SECRET + '", "priority": "P2"}',
        json.dumps({"amount": SECRET, "order_id": SECRET}),
        json.dumps({"amount": 1, "order_id": SECRET}),
        SECRET,
    ],
)
def test_reasons_never_quote_argument_values_or_invented_keys(arguments: str) -> None:
    for name in ("set_priority", "refund"):
        result = judge(call(name, arguments))
        assert not result.ok
        reason = result.violations[0].reason
        assert SECRET not in reason
        assert "jane" not in reason.lower()
        assert len(reason) < 80
