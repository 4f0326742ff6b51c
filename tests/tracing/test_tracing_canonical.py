"""The lineage hash is defined by ``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode()`` (DESIGN.md section 8). `canonical_json` takes a faster
encoder; these tests hold it to the definition byte for byte, so a verifier written from
the design alone agrees with every hash the gateway writes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracing.lineage import ChainWriter, canonical_json, event_hash, rfc3339_ms


def definition(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_LEAVES = st.none() | st.booleans() | st.integers() | st.text()
_TREES = st.recursive(
    _LEAVES, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=40
)


@settings(max_examples=500, deadline=None)
@given(_TREES)
def test_canonical_json_is_the_definition_byte_for_byte(obj: Any) -> None:
    try:
        expected = definition(obj)
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: both refuse it
        with pytest.raises(UnicodeEncodeError):
            canonical_json(obj)
        return
    assert canonical_json(obj) == expected


@pytest.mark.parametrize(
    "text",
    [
        '\x00\x01\x1f\x7f\b\f\n\r\t"\\/',  # every escape json writes, and DEL it does not
        "caf\u00e9 \u2028\u2029 \ufeff \U0001f600",  # non-ASCII stays UTF-8, separators too
        "",
    ],
)
def test_escapes_match_the_definition(text: str) -> None:
    obj = {text: [text], "k": text}
    assert canonical_json(obj) == definition(obj)


def test_keys_sort_by_code_point_across_planes() -> None:
    obj = {"\U0001f600": 1, "\uffff": 2, "a": 3, "B": 4, "\u00e9": 5}
    assert canonical_json(obj) == definition(obj)


class _Frozen(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_values_the_fast_encoder_refuses_take_the_definitions_path() -> None:
    big = {"n": 2**70, "m": -(2**64)}  # beyond 64 bits
    assert canonical_json(big) == definition(big)
    nested = {"outer": _Frozen({"b": 1, "a": [1, 2]})}
    assert canonical_json(nested) == definition({"outer": {"a": [1, 2], "b": 1}})


def test_floats_are_still_refused() -> None:
    with pytest.raises(TypeError, match=r"float at \.data\.x "):
        canonical_json({"data": {"x": 1.0}})


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**13), max_value=10**14))
def test_rfc3339_ms_matches_datetime(epoch_ms: int) -> None:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    assert rfc3339_ms(epoch_ms) == t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def test_consecutive_milliseconds_across_a_second_boundary() -> None:
    assert [rfc3339_ms(1795850202998 + i) for i in range(3)] == [
        "2026-11-28T07:16:42.998Z",
        "2026-11-28T07:16:42.999Z",
        "2026-11-28T07:16:43.000Z",
    ]


def test_written_events_verify_against_the_definition() -> None:
    writer = ChainWriter("gw-1")
    data = {"use_case": "triage", "fields": {"used": ["a"], "stripped": []}, "n": 3}
    event = writer.next_event("request.started", "lin-1", data, at_ms=1795850202123)
    body = {k: v for k, v in event.items() if k != "hash"}
    assert event["hash"] == hashlib.sha256(definition(body)).hexdigest() == event_hash(event)
