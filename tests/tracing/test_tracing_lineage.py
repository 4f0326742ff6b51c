"""The lineage hash chain: canonical JSON, event hashes, writers and verification."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracing import (
    ZERO_HASH,
    BrokenLink,
    ChainWriter,
    canonical_json,
    checkpoint_body,
    checkpoint_signing_bytes,
    event_hash,
    rfc3339_ms,
    verify_chains,
)

T0 = 1_795_850_202_123  # 2026-11-28T07:16:42.123Z
Event = dict[str, Any]


def design_formula(obj: Any) -> bytes:
    """DESIGN.md section 8, verbatim."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_chain(chain: str = "gw-a", n: int = 5, start_ms: int = T0) -> list[Event]:
    writer = ChainWriter(chain)
    return [
        writer.next_event(
            "request.started" if i % 2 == 0 else "request.ended",
            f"lin_{i // 2:04d}",
            {"use_case": "refund_triage", "n": i, "note": "Zoë / 返金 ✓"},
            at_ms=start_ms + i,
        )
        for i in range(n)
    ]


def rehash(event: Event) -> Event:
    event["hash"] = event_hash(event)
    return event


# --- canonical JSON ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"b": 1, "a": "é", "c": [3, 2, 1]},
        {"name": "Zoë Ångström", "city": "東京", "emoji": "🙂", "rtl": "שלום"},
        {"quote": 'say "hi"', "nl": "a\nb", "tab": "\t", "ctl": "\x01", "ls": "\u2028", "bs": "\\"},
        {"nested": {"z": {"y": [{"b": True, "a": None}]}, "a": -(2**70)}},
        {"": "", "empty": {}, "list": []},
        ["top", "level", 1, False],
        "just a string",
        0,
    ],
)
def test_canonical_json_is_the_design_formula_byte_for_byte(obj: Any) -> None:
    assert canonical_json(obj) == design_formula(obj)


def test_canonical_json_known_bytes() -> None:
    assert canonical_json({"b": 1, "a": "é", "ü": [True, None]}) == (
        b'{"a":"\xc3\xa9","b":1,"\xc3\xbc":[true,null]}'
    )
    assert canonical_json({"t": (1, 2)}) == b'{"t":[1,2]}'


@pytest.mark.parametrize(
    "obj",
    [
        1.5,
        0.0,
        -0.0,
        float("nan"),
        float("inf"),
        {"duration": 1.0},
        {"a": [1, 2, {"b": [0.1]}]},
        [{"x": {"y": 2.5}}],
    ],
)
def test_canonical_json_refuses_floats_anywhere(obj: Any) -> None:
    with pytest.raises(TypeError, match="float"):
        canonical_json(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {1: "int key"},
        {("a",): 1},
        {"s": {1, 2}},
        {"b": b"bytes"},
        {"d": datetime.now(UTC)},
        object(),
    ],
)
def test_canonical_json_refuses_non_json(obj: Any) -> None:
    with pytest.raises(TypeError):
        canonical_json(obj)


def test_event_hash_ignores_only_the_hash_key() -> None:
    event = {"chain": "c", "seq": 1, "data": {"hash": "kept"}, "hash": "dropped"}
    expected = hashlib.sha256(design_formula({"chain": "c", "seq": 1, "data": {"hash": "kept"}}))
    assert event_hash(event) == expected.hexdigest()
    assert event_hash({k: v for k, v in event.items() if k != "hash"}) == expected.hexdigest()


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (T0, "2026-11-28T07:16:42.123Z"),
        (T0 + 877, "2026-11-28T07:16:43.000Z"),
        (951_782_400_001, "2000-02-29T00:00:00.001Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_rfc3339_ms(epoch_ms: int, text: str) -> None:
    assert rfc3339_ms(epoch_ms) == text


@pytest.mark.parametrize("bad", [1.5, True, "0"])
def test_rfc3339_ms_wants_integer_milliseconds(bad: Any) -> None:
    with pytest.raises(TypeError):
        rfc3339_ms(bad)


# --- writing -----------------------------------------------------------------------------


def test_writer_builds_the_documented_event() -> None:
    writer = ChainWriter("gw-a")
    first = writer.next_event("request.started", "lin_1", {"use_case": "x"}, at_ms=T0)
    assert set(first) == {"chain", "seq", "type", "at", "lineage_id", "prev_hash", "data", "hash"}
    assert first["chain"] == "gw-a"
    assert first["seq"] == 1
    assert first["type"] == "request.started"
    assert first["at"] == "2026-11-28T07:16:42.123Z"
    assert first["lineage_id"] == "lin_1"
    assert first["prev_hash"] == ZERO_HASH == "0" * 64
    assert first["data"] == {"use_case": "x"}
    body = {k: v for k, v in first.items() if k != "hash"}
    assert first["hash"] == hashlib.sha256(design_formula(body)).hexdigest()
    assert (writer.seq, writer.head) == (1, first["hash"])

    second = writer.next_event("request.ended", "lin_1", {"end": "completed"}, at_ms=T0 + 5)
    assert second["seq"] == 2
    assert second["prev_hash"] == first["hash"]
    assert (writer.seq, writer.head) == (2, second["hash"])


def test_writer_output_is_detached_from_the_callers_data() -> None:
    data: dict[str, Any] = {"fields": ["order_id"], "nested": {"k": (1, 2)}}
    event = ChainWriter("gw-a").next_event("request.started", "lin", data, at_ms=T0)
    data["fields"].append("email")  # the caller mutates its own object afterwards
    assert event["data"] == {"fields": ["order_id"], "nested": {"k": [1, 2]}}
    assert verify_chains([event]).ok
    # What a store would hand back verifies too.
    assert verify_chains([json.loads(json.dumps(event))]).ok


def test_writer_refuses_floats_and_does_not_advance() -> None:
    writer = ChainWriter("gw-a")
    writer.next_event("request.started", "lin", {}, at_ms=T0)
    head = (writer.seq, writer.head)
    with pytest.raises(TypeError):
        writer.next_event("request.ended", "lin", {"latency_s": 0.5}, at_ms=T0 + 1)
    with pytest.raises(TypeError):
        writer.next_event("request.ended", "lin", {}, at_ms=T0 + 0.5)  # type: ignore[arg-type]
    assert (writer.seq, writer.head) == head


def test_writer_resumes_from_a_stored_head() -> None:
    events = build_chain(n=3)
    resumed = ChainWriter("gw-a", seq=events[-1]["seq"], head=events[-1]["hash"])
    events.append(resumed.next_event("switch.engaged", "", {"switch": "model:x"}, at_ms=T0 + 9))
    assert events[-1]["seq"] == 4
    report = verify_chains(events)
    assert report.ok
    assert report.heads == {"gw-a": (4, events[-1]["hash"])}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chain": ""},
        {"chain": "c", "seq": -1},
        {"chain": "c", "seq": True},
        {"chain": "c", "seq": 3, "head": "ABC"},
        {"chain": "c", "seq": 3, "head": "A" * 64},
        {"chain": "c", "seq": 0, "head": "a" * 64},
    ],
)
def test_writer_rejects_bad_resume_points(kwargs: dict[str, Any]) -> None:
    chain = kwargs.pop("chain")
    with pytest.raises(ValueError):
        ChainWriter(chain, **kwargs)


# --- verification ------------------------------------------------------------------------


def test_intact_chain_verifies_in_any_order() -> None:
    events = build_chain(n=8)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    for candidate in (events, shuffled, reversed(events)):
        report = verify_chains(candidate)
        assert report.ok
        assert report.first_broken is None
        assert report.broken == ()
        assert report.events == 8
        assert report.heads == {"gw-a": (8, events[-1]["hash"])}


def test_empty_input_verifies() -> None:
    report = verify_chains([])
    assert report.ok and report.events == 0 and dict(report.heads) == {}


def test_several_interleaved_chains() -> None:
    a, b, c = build_chain("gw-a", 6), build_chain("gw-b", 4), build_chain("gw-c", 1)
    mixed = [e for group in zip(a, b + [None] * 2, c + [None] * 5, strict=True) for e in group if e]
    report = verify_chains(mixed)
    assert report.ok
    assert report.events == 11
    assert report.heads == {
        "gw-a": (6, a[-1]["hash"]),
        "gw-b": (4, b[-1]["hash"]),
        "gw-c": (1, c[-1]["hash"]),
    }

    b[2]["data"]["n"] = 99  # tamper in one chain only
    report = verify_chains(mixed)
    assert not report.ok
    assert report.first_broken == BrokenLink("gw-b", 3, "hash mismatch")
    assert report.heads["gw-b"] == (2, b[1]["hash"])  # the verified prefix
    assert report.heads["gw-a"] == (6, a[-1]["hash"])
    assert report.heads["gw-c"] == (1, c[-1]["hash"])


def edit_data(events: list[Event]) -> None:
    events[2]["data"]["use_case"] = "something_else"


def edit_hash(events: list[Event]) -> None:
    events[2]["hash"] = "f" * 64


def edit_data_and_rehash(events: list[Event]) -> None:
    events[2]["data"]["use_case"] = "something_else"
    rehash(events[2])


def edit_at(events: list[Event]) -> None:
    events[2]["at"] = "2026-11-28T07:16:43.000Z"


def delete_middle(events: list[Event]) -> None:
    del events[2]


def delete_first(events: list[Event]) -> None:
    del events[0]


def swap_seq(events: list[Event]) -> None:
    events[1]["seq"], events[2]["seq"] = events[2]["seq"], events[1]["seq"]


def swap_and_rehash(events: list[Event]) -> None:
    swap_seq(events)
    rehash(events[1])
    rehash(events[2])


def duplicate(events: list[Event]) -> None:
    events.append(copy.deepcopy(events[3]))


def replace_first_prev_hash(events: list[Event]) -> None:
    events[0]["prev_hash"] = "1" * 64
    rehash(events[0])


def float_injected(events: list[Event]) -> None:
    events[2]["data"]["latency"] = 0.5


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (edit_data, BrokenLink("gw-a", 3, "hash mismatch")),
        (edit_hash, BrokenLink("gw-a", 3, "hash mismatch")),
        (edit_at, BrokenLink("gw-a", 3, "hash mismatch")),
        (float_injected, BrokenLink("gw-a", 3, "hash mismatch")),
        (edit_data_and_rehash, BrokenLink("gw-a", 4, "prev_hash mismatch")),
        (delete_middle, BrokenLink("gw-a", 4, "gap: expected seq 3")),
        (delete_first, BrokenLink("gw-a", 2, "gap: expected seq 1")),
        (swap_seq, BrokenLink("gw-a", 2, "hash mismatch")),
        (swap_and_rehash, BrokenLink("gw-a", 2, "prev_hash mismatch")),
        (duplicate, BrokenLink("gw-a", 4, "duplicate seq 4")),
        (replace_first_prev_hash, BrokenLink("gw-a", 1, "first event prev_hash not zero")),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_tamper_is_caught_at_the_right_link(
    tamper: Callable[[list[Event]], None], expected: BrokenLink
) -> None:
    events = build_chain(n=6)
    tamper(events)
    report = verify_chains(events)
    assert not report.ok
    assert report.first_broken == expected
    assert report.broken == (expected,)


def test_malformed_events_are_reported() -> None:
    events = build_chain(n=2)
    no_seq = {k: v for k, v in events[1].items() if k != "seq"}
    report = verify_chains([events[0], no_seq, {"chain": "gw-a", "seq": "3"}, "junk"])  # type: ignore[list-item]
    reasons = [link.reason for link in report.broken]
    assert reasons == [
        "malformed event: not an object",
        "malformed event: missing 'seq'",
        "malformed event: missing 'type'",
    ]
    assert report.heads == {"gw-a": (1, events[0]["hash"])}


# --- checkpoints -------------------------------------------------------------------------


def sign_checkpoint(key: Ed25519PrivateKey, heads: Mapping[str, tuple[int, str]], at: str) -> Event:
    body = checkpoint_body(heads, at)
    signature = key.sign(canonical_json(body))
    return {
        **body,
        "kid": "lineage-2026-11",
        "signature": base64.urlsafe_b64encode(signature).decode().rstrip("="),
    }


def ed25519_verifier(key: Ed25519PrivateKey) -> Callable[[Mapping[str, Any]], bool]:
    public = key.public_key()

    def verify(checkpoint: Mapping[str, Any]) -> bool:
        raw = checkpoint["signature"]
        signature = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        try:
            public.verify(signature, checkpoint_signing_bytes(checkpoint))
        except InvalidSignature:
            return False
        return True

    return verify


def test_checkpoint_body_shape() -> None:
    body = checkpoint_body(
        {"gw-a": (5, "a" * 64), "gw-b": (1, "b" * 64)}, "2026-11-28T07:20:00.000Z"
    )
    assert body == {
        "chains": {"gw-a": {"seq": 5, "hash": "a" * 64}, "gw-b": {"seq": 1, "hash": "b" * 64}},
        "at": "2026-11-28T07:20:00.000Z",
    }
    signed = {**body, "kid": "k", "signature": "sig"}
    assert checkpoint_signing_bytes(signed) == canonical_json(body) == design_formula(body)


def test_signed_checkpoints_verify_and_catch_truncation() -> None:
    key = Ed25519PrivateKey.generate()
    a, b = build_chain("gw-a", 6), build_chain("gw-b", 3)
    early = sign_checkpoint(key, {"gw-a": (3, a[2]["hash"])}, "2026-11-28T07:17:00.000Z")
    late = sign_checkpoint(
        key, {"gw-a": (6, a[5]["hash"]), "gw-b": (3, b[2]["hash"])}, "2026-11-28T07:18:00.000Z"
    )
    verify = ed25519_verifier(key)
    assert verify_chains(a + b, [early, late], verify_signature=verify).ok

    # The tail of gw-a is cut: the chain alone still verifies, the checkpoint does not.
    truncated = a[:4] + b
    assert verify_chains(truncated).ok
    report = verify_chains(truncated, [early, late], verify_signature=verify)
    assert report.first_broken == BrokenLink(
        "gw-a", 6, "checkpoint beyond chain head (truncated)", "2026-11-28T07:18:00.000Z"
    )
    assert report.broken == (report.first_broken,)

    # A whole chain deleted.
    report = verify_chains(a, [late], verify_signature=verify)
    assert report.first_broken == BrokenLink(
        "gw-b", 3, "checkpoint beyond chain head (truncated)", "2026-11-28T07:18:00.000Z"
    )

    # The tail cut and rewritten with fresh, self-consistent events.
    rewriter = ChainWriter("gw-a", seq=4, head=a[3]["hash"])
    forged = [
        rewriter.next_event("request.ended", "lin", {"end": "completed"}, at_ms=T0 + 50 + i)
        for i in range(2)
    ]
    report = verify_chains(a[:4] + forged + b, [late], verify_signature=verify)
    assert verify_chains(a[:4] + forged + b).ok
    assert report.first_broken == BrokenLink(
        "gw-a", 6, "checkpoint hash mismatch", "2026-11-28T07:18:00.000Z"
    )


def test_bad_checkpoint_signature_via_callback() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    a = build_chain("gw-a", 3)
    checkpoint = sign_checkpoint(other, {"gw-a": (3, a[2]["hash"])}, "2026-11-28T07:18:00.000Z")
    report = verify_chains(a, [checkpoint], verify_signature=ed25519_verifier(key))
    assert report.first_broken == BrokenLink(
        "", 0, "bad checkpoint signature", "2026-11-28T07:18:00.000Z"
    )

    # A correctly signed checkpoint whose body was edited afterwards.
    moved = sign_checkpoint(key, {"gw-a": (3, a[2]["hash"])}, "2026-11-28T07:18:00.000Z")
    moved["chains"] = {"gw-a": {"seq": 2, "hash": a[1]["hash"]}}
    report = verify_chains(a, [moved], verify_signature=ed25519_verifier(key))
    assert [link.reason for link in report.broken] == ["bad checkpoint signature"]

    # A callback that raises (undecodable signature) counts as a bad signature.
    def explode(_: Mapping[str, Any]) -> bool:
        raise ValueError("not base64")

    assert verify_chains(a, [moved], verify_signature=explode).first_broken == BrokenLink(
        "", 0, "bad checkpoint signature", "2026-11-28T07:18:00.000Z"
    )
    # Without a callback, signatures are not judged.
    assert verify_chains(a, [checkpoint]).ok


def test_malformed_checkpoints() -> None:
    a = build_chain("gw-a", 2)
    report = verify_chains(
        a,
        [
            {"at": "2026-11-28T07:18:00.000Z"},
            {"chains": {"gw-a": {"seq": "2"}}, "at": "2026-11-28T07:19:00.000Z"},
        ],
    )
    assert [link.reason for link in report.broken] == [
        "malformed checkpoint: needs 'chains' and 'at'",
        "malformed checkpoint: needs seq and hash",
    ]


def test_break_and_truncation_are_both_listed_in_chain_order() -> None:
    a, b = build_chain("gw-a", 4), build_chain("gw-b", 4)
    checkpoint = checkpoint_body({"gw-a": (4, a[3]["hash"]), "gw-b": (4, b[3]["hash"])}, "t")
    b[1]["data"]["n"] = -1
    report = verify_chains(b + a[:2], [checkpoint])
    assert report.broken == (
        BrokenLink("gw-a", 4, "checkpoint beyond chain head (truncated)", "t"),
        BrokenLink("gw-b", 2, "hash mismatch"),
    )
    assert report.first_broken == report.broken[0]
