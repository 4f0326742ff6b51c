"""The lineage hash chain of DESIGN.md section 8: canonical JSON, events, verification.

Usage::

    writer = ChainWriter("gw-7f3a")                    # or resume: seq=..., head=...
    event = writer.next_event("request.started", lineage_id, {"use_case": "refund"},
                              at_ms=1795850202123)
    store.append(event)                                # the gateway's job, durably
    body = checkpoint_body({writer.chain: (writer.seq, writer.head)}, rfc3339_ms(now_ms))
    signature = sign(canonical_json(body))             # Ed25519 lives in the gateway

    report = verify_chains(events, checkpoints, verify_signature=check)
    if not report.ok:
        print(report.first_broken)

An event is ``{"chain", "seq", "type", "at", "lineage_id", "prev_hash", "data", "hash"}``;
``seq`` starts at 1 and has no gaps, ``prev_hash`` is 64 zeros for a chain's first event
and ``hash`` is the lowercase hex SHA-256 of
``json.dumps(event_without_hash, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode()``. Floats are refused anywhere in an event (times are
integer milliseconds), so the bytes never depend on float formatting.

A checkpoint is ``{"chains": {chain: {"seq": n, "hash": h}}, "at", "kid", "signature"}``,
the signature over ``canonical_json`` of ``{"chains", "at"}``. Checkpoints make a
truncated tail visible: a chain that ends before a checkpointed head was cut.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

ZERO_HASH: Final = "0" * 64
EVENT_KEYS: Final = ("chain", "seq", "type", "at", "lineage_id", "prev_hash", "data", "hash")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _check_canonical(obj: Any, path: str) -> None:
    """Refuse what the canonical form must not contain: floats (their text depends on
    the formatter), non-string keys (they would collide with string keys) and anything
    ``json`` would not encode as it is."""
    if isinstance(obj, str) or obj is None or isinstance(obj, bool):
        return
    if isinstance(obj, int):
        return
    if isinstance(obj, float):
        raise TypeError(f"float at {path or '$'} is not allowed in canonical JSON")
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"non-string key {key!r} at {path or '$'} in canonical JSON")
            _check_canonical(value, f"{path}.{key}")
        return
    if isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            _check_canonical(value, f"{path}[{index}]")
        return
    raise TypeError(f"{type(obj).__name__} at {path or '$'} is not JSON")


_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _plainly_canonical(obj: Any) -> bool:
    """The fast check, on exact built-in types only: True means canonical. False means
    "look closer" (a float, a bad key, or merely a Mapping or str subclass), which
    :func:`_check_canonical` then decides, with the path in its message. The walk
    costs a few microseconds per event instead of tens."""
    kind = type(obj)
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str:
                return False
            if type(value) not in _SCALARS and not _plainly_canonical(value):
                return False
        return True
    if kind is list or kind is tuple:
        for value in obj:
            if type(value) not in _SCALARS and not _plainly_canonical(value):
                return False
        return True
    return kind in _SCALARS


def canonical_json(obj: Any) -> bytes:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    as UTF-8 bytes; ``TypeError`` on floats, non-string keys and non-JSON types.

    orjson with sorted keys writes the same bytes for every value that passes the
    check (compact separators, UTF-8 rather than escapes, the same short escapes, keys
    in code-point order; tests/tracing/test_tracing_canonical.py holds it to that) at a
    fraction of the cost. What orjson refuses (a Mapping that is not a dict, an int
    beyond 64 bits, a lone surrogate) takes the definition's own path, so the answer
    never depends on which encoder ran."""
    if not _plainly_canonical(obj):
        _check_canonical(obj, "")
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        pass
    # A Mapping that is not a dict would not be encodable; normalise nested ones.
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_mapping
    ).encode()


def _mapping(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON")  # pragma: no cover - checked above


def event_hash(event: Mapping[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of ``event`` without its ``hash``."""
    body = {key: value for key, value in event.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def rfc3339_ms(epoch_ms: int) -> str:
    """``1795850202123`` -> ``"2026-11-28T07:16:42.123Z"`` (UTC, millisecond precision)."""
    global _last_second
    if isinstance(epoch_ms, bool) or not isinstance(epoch_ms, int):
        raise TypeError(f"epoch_ms must be an int of milliseconds, not {type(epoch_ms).__name__}")
    second, ms = divmod(epoch_ms, 1000)
    cached_second, prefix = _last_second
    if cached_second != second:  # events come in bursts within a second: format it once
        t = _EPOCH + timedelta(seconds=second)
        prefix = (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."
        )
        _last_second = (second, prefix)
    return f"{prefix}{ms:03d}Z"


#: the last second `rfc3339_ms` formatted, and its text up to the milliseconds
_last_second: tuple[int, str] = (-1, "")


class ChainWriter:
    """Appends to one chain. One writer per chain and process; not thread-safe (the
    gateway serialises calls). The returned event is a fresh plain-JSON dict: exactly
    the structure that was hashed, so storing and re-reading it verifies."""

    __slots__ = ("chain", "head", "seq")

    def __init__(self, chain: str, *, seq: int = 0, head: str = ZERO_HASH) -> None:
        if not isinstance(chain, str) or not chain:
            raise ValueError("chain id must be a non-empty string")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"seq must be a non-negative int, not {seq!r}")
        if not isinstance(head, str) or not _HEX64.fullmatch(head):
            raise ValueError("head must be 64 lowercase hex digits")
        if seq == 0 and head != ZERO_HASH:
            raise ValueError("an empty chain's head is ZERO_HASH")
        self.chain = chain
        self.seq = seq
        self.head = head

    def next_event(
        self, type: str, lineage_id: str, data: Mapping[str, Any], *, at_ms: int
    ) -> dict[str, Any]:
        """Build, hash and return the next event, then advance the head. Nothing advances
        if the event cannot be encoded (a float in ``data``, say)."""
        if not isinstance(type, str) or not type:
            raise ValueError("event type must be a non-empty string")
        if not isinstance(lineage_id, str):
            raise TypeError("lineage_id must be a string")
        body = {
            "chain": self.chain,
            "seq": self.seq + 1,
            "type": type,
            "at": rfc3339_ms(at_ms),
            "lineage_id": lineage_id,
            "prev_hash": self.head,
            "data": data,
        }
        encoded = canonical_json(body)
        digest = hashlib.sha256(encoded).hexdigest()
        event: dict[str, Any] = orjson.loads(encoded)
        event["hash"] = digest
        self.seq += 1
        self.head = digest
        return event


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first place a chain (or a checkpoint over it) stops verifying.

    ``reason`` is one of: ``"hash mismatch"``, ``"prev_hash mismatch"``,
    ``"gap: expected seq N"``, ``"duplicate seq N"``, ``"first event prev_hash not zero"``,
    ``"malformed event: ..."``, ``"checkpoint beyond chain head (truncated)"``,
    ``"checkpoint hash mismatch"``, ``"bad checkpoint signature"``,
    ``"malformed checkpoint: ..."``. For checkpoint problems ``checkpoint_at`` names the
    checkpoint; a bad signature has ``chain=""`` and ``seq=0``.
    """

    chain: str
    seq: int
    reason: str
    checkpoint_at: str | None = None


@dataclass(frozen=True, slots=True)
class ChainReport:
    """``heads`` maps each chain to the last event of its verified prefix; ``broken``
    lists every problem found (at most one chain break per chain, then every checkpoint
    problem), sorted by chain then seq; ``first_broken`` is ``broken[0]``."""

    ok: bool
    heads: Mapping[str, tuple[int, str]]
    events: int
    first_broken: BrokenLink | None
    broken: tuple[BrokenLink, ...] = field(default=())


def checkpoint_body(heads: Mapping[str, tuple[int, str]], at: str) -> dict[str, Any]:
    """The signed part of a checkpoint: ``{"chains": {id: {"seq", "hash"}}, "at"}``."""
    return {
        "chains": {chain: {"seq": seq, "hash": digest} for chain, (seq, digest) in heads.items()},
        "at": at,
    }


def checkpoint_signing_bytes(checkpoint: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: canonical JSON of ``{chains, at}``."""
    return canonical_json({"chains": checkpoint["chains"], "at": checkpoint["at"]})


def verify_chains(
    events: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]] = (),
    *,
    verify_signature: Callable[[Mapping[str, Any]], bool] | None = None,
) -> ChainReport:
    """Recompute every chain in ``events`` (any number of chains, any order) and check
    each checkpoint against them. Signatures are checked only when ``verify_signature``
    is given; it receives the whole checkpoint and returns whether its signature is
    valid (an exception counts as invalid)."""
    by_chain: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    broken: list[BrokenLink] = []
    count = 0
    for event in events:
        count += 1
        problem = _malformed(event)
        if problem is not None:
            chain = event.get("chain") if isinstance(event, Mapping) else None
            seq = event.get("seq") if isinstance(event, Mapping) else None
            broken.append(
                BrokenLink(
                    chain if isinstance(chain, str) else "",
                    seq if isinstance(seq, int) and not isinstance(seq, bool) else 0,
                    f"malformed event: {problem}",
                )
            )
            continue
        by_chain.setdefault(event["chain"], {}).setdefault(event["seq"], []).append(event)

    heads: dict[str, tuple[int, str]] = {}
    for chain in sorted(by_chain):
        head, link = _verify_one(chain, by_chain[chain])
        if head is not None:
            heads[chain] = head
        if link is not None:
            broken.append(link)

    for checkpoint in checkpoints:
        broken.extend(_check_checkpoint(checkpoint, by_chain, verify_signature))

    broken.sort(key=lambda link: (link.chain, link.seq))
    return ChainReport(
        ok=not broken,
        heads=heads,
        events=count,
        first_broken=broken[0] if broken else None,
        broken=tuple(broken),
    )


def _malformed(event: Any) -> str | None:
    if not isinstance(event, Mapping):
        return "not an object"
    for key in EVENT_KEYS:
        if key not in event:
            return f"missing {key!r}"
    if not isinstance(event["chain"], str) or not event["chain"]:
        return "chain is not a non-empty string"
    seq = event["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return "seq is not a positive integer"
    return None


def _verify_one(
    chain: str, by_seq: Mapping[int, list[Mapping[str, Any]]]
) -> tuple[tuple[int, str] | None, BrokenLink | None]:
    """Walk one chain from seq 1; stop at the first broken link."""
    head: tuple[int, str] | None = None
    expected = 1
    prev = ZERO_HASH
    for seq in sorted(by_seq):
        if seq != expected:
            return head, BrokenLink(chain, seq, f"gap: expected seq {expected}")
        found = by_seq[seq]
        if len(found) > 1:
            return head, BrokenLink(chain, seq, f"duplicate seq {seq}")
        event = found[0]
        try:
            recomputed = event_hash(event)
        except (TypeError, ValueError, UnicodeError):
            recomputed = None
        if recomputed is None or recomputed != event["hash"]:
            return head, BrokenLink(chain, seq, "hash mismatch")
        if event["prev_hash"] != prev:
            reason = "first event prev_hash not zero" if seq == 1 else "prev_hash mismatch"
            return head, BrokenLink(chain, seq, reason)
        prev = event["hash"]
        head = (seq, prev)
        expected += 1
    return head, None


def _check_checkpoint(
    checkpoint: Mapping[str, Any],
    by_chain: Mapping[str, Mapping[int, list[Mapping[str, Any]]]],
    verify_signature: Callable[[Mapping[str, Any]], bool] | None,
) -> list[BrokenLink]:
    at = checkpoint.get("at") if isinstance(checkpoint, Mapping) else None
    label = at if isinstance(at, str) else None
    chains = checkpoint.get("chains") if isinstance(checkpoint, Mapping) else None
    if label is None or not isinstance(chains, Mapping):
        return [BrokenLink("", 0, "malformed checkpoint: needs 'chains' and 'at'", label)]
    links: list[BrokenLink] = []
    if verify_signature is not None:
        try:
            valid = bool(verify_signature(checkpoint))
        except Exception:
            valid = False
        if not valid:
            links.append(BrokenLink("", 0, "bad checkpoint signature", label))
    for chain, mark in chains.items():
        seq = mark.get("seq") if isinstance(mark, Mapping) else None
        digest = mark.get("hash") if isinstance(mark, Mapping) else None
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(digest, str):
            links.append(
                BrokenLink(str(chain), 0, "malformed checkpoint: needs seq and hash", label)
            )
            continue
        stored = by_chain.get(chain, {})
        found = stored.get(seq)
        if not found:
            if seq > max(stored, default=0):
                links.append(
                    BrokenLink(chain, seq, "checkpoint beyond chain head (truncated)", label)
                )
            # A hole below the last stored seq is already reported as a gap.
            continue
        if any(event["hash"] != digest for event in found):
            links.append(BrokenLink(chain, seq, "checkpoint hash mismatch", label))
    return links
