"""Hypothesis on the request parsers: any bytes, any headers, any JSON give a 400 or a model,
never another exception; scrubbing reaches every string that goes upstream."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from gateway.api import plain_headers
from gateway.errors import InvalidRequest
from gateway.models import parse_chat_request, read_governance
from gateway.stages.payload import scrub_payload, validate_messages

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_a_400(raw: bytes) -> None:
    try:
        parse_chat_request(raw)
    except InvalidRequest:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["model", "messages", "stream", "n", "tools", "casegate", "x"]),
        json_values,
        max_size=6,
    )
)
def test_any_json_object_parses_or_is_a_400(body: dict[str, Any]) -> None:
    try:
        chat = parse_chat_request(orjson.dumps(body))
    except InvalidRequest as exc:
        assert exc.status == 400
        return
    try:
        validate_messages(chat.messages, allowed_unscanned=frozenset())
    except InvalidRequest:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "x-casegate-use-case",
                "x-casegate-action-class",
                "x-casegate-case-id",
                "x-casegate-customer-id",
                "x-casegate-queue",
                "x-casegate-segment",
                "x-casegate-dry-run",
            ]
        ),
        st.text(max_size=140),
        max_size=7,
    )
)
def test_any_headers_read_or_are_a_400_naming_the_header(hdrs: dict[str, str]) -> None:
    try:
        gov = read_governance(hdrs)
    except InvalidRequest as exc:
        assert exc.param and exc.param.lower().startswith("x-casegate-")
        return
    assert gov.use_case == hdrs["x-casegate-use-case"]


_NAMES = ["authorization", "x-casegate-use-case", "x-casegate-case-id", "traceparent"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(_NAMES).map(str.encode),
            st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b),
        ),
        max_size=8,
    )
)
def test_the_chat_header_dict_answers_as_starlettes_headers(raw: list[tuple[bytes, bytes]]) -> None:
    """The chat path reads its headers from one dict: a repeated name gives its first
    value and every value decodes as Latin-1, exactly as Starlette's `Headers` does."""
    plain = plain_headers(raw)
    theirs = Headers(raw=raw)
    for name in [*_NAMES, "x-casegate-queue"]:
        assert plain.get(name) == theirs.get(name)


@st.composite
def messages(draw: Any) -> list[dict[str, Any]]:
    text = st.text(max_size=30)
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["user", "parts", "assistant_tools", "tool", "system"]))
        if kind == "user":
            out.append({"role": "user", "content": draw(text), "name": draw(text)})
        elif kind == "parts":
            out.append({"role": "user", "content": [{"type": "text", "text": draw(text)}]})
        elif kind == "assistant_tools":
            args = orjson.dumps(draw(json_values)).decode()
            out.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": args},
                        }
                    ],
                }
            )
        elif kind == "tool":
            out.append({"role": "tool", "tool_call_id": "c", "content": draw(text)})
        else:
            out.append({"role": "system", "content": draw(text)})
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


@settings(max_examples=200, deadline=None)
@given(messages(), st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_scrubbing_reaches_every_string_value_that_goes_upstream(
    msgs: list[dict[str, Any]], context: dict[str, Any]
) -> None:
    validate_messages(msgs, allowed_unscanned=frozenset())
    out = scrub_payload(msgs, context, lambda s: "R")
    for msg in out.messages:
        for key, value in msg.items():
            if key in ("role", "tool_call_id"):
                continue
            if key == "tool_calls":
                for call in value:
                    args = orjson.loads(call["function"]["arguments"])
                    assert all(s == "R" for s in _strings(args))
                continue
            assert all(s in ("R", "text") for s in _strings(value)), (key, value)
    assert all(s == "R" for s in _strings(out.context))
