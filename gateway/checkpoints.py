"""Signed checkpoints over every chain head, and their verification.

Usage::

    checkpoint = await write_checkpoint(store, writer, keys)   # periodic and at shutdown
    report = verify_lineage(events, checkpoints, public_keys)  # tracing.ChainReport

A checkpoint is ``{"chains": {id: {"seq", "hash"}}, "at", "kid", "signature"}``: the
signature is base64url Ed25519 (the signing key, ``keys.signing_kid``) over the
canonical JSON of ``{chains, at}`` (DESIGN.md 10.9). Like CloudTrail's digest files it
makes a truncated tail visible: a chain that now ends before a checkpointed head was cut.

Which chains a checkpoint names: the writer's own chain (its committed head, read under
the writer's lock so no write in flight is ever cited), every chain whose writer is still
open (its last stored event), and every chain closed in the last
:data:`CLOSED_CHAIN_WINDOW_MS` (its final head), so each chain's final head is signed
many times over while old, finished chains do not weigh on every checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.keys import KeyMaterial, b64url, b64url_decode
from gateway.lineage import LineageWriter, now_ms
from gateway.stores import StateStore
from tracing import (
    ChainReport,
    checkpoint_body,
    checkpoint_signing_bytes,
    rfc3339_ms,
    verify_chains,
)

__all__ = [
    "CLOSED_CHAIN_WINDOW_MS",
    "checkpoint_heads",
    "sign_checkpoint",
    "signature_checker",
    "verify_lineage",
    "write_checkpoint",
]

log = logging.getLogger("casegate.lineage")

CLOSED_CHAIN_WINDOW_MS = 24 * 3600 * 1000


async def checkpoint_heads(
    store: StateStore, writer: LineageWriter, at_ms: int
) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    for row in await store.writers():
        if row.chain == writer.chain_id:
            continue
        if row.closed_ms is not None:
            if row.closed_ms >= at_ms - CLOSED_CHAIN_WINDOW_MS and row.head_seq > 0:
                heads[row.chain] = (row.head_seq, row.head_hash)
            continue
        head = await store.chain_head(row.chain)
        if head is not None:
            heads[row.chain] = head
    own = await writer.committed_head()
    if own[0] > 0:
        heads[writer.chain_id] = own
    return heads


def sign_checkpoint(
    keys: KeyMaterial, heads: Mapping[str, tuple[int, str]], at: str
) -> dict[str, Any]:
    body = checkpoint_body(heads, at)
    signature = keys.signing_key().sign(checkpoint_signing_bytes(body))
    return {**body, "kid": keys.signing_kid, "signature": b64url(signature)}


async def write_checkpoint(
    store: StateStore, writer: LineageWriter, keys: KeyMaterial
) -> dict[str, Any] | None:
    """Sign and store one checkpoint; ``None`` when there is no chain to name yet."""
    at_ms = now_ms()
    heads = await checkpoint_heads(store, writer, at_ms)
    if not heads:
        return None
    checkpoint = sign_checkpoint(keys, heads, rfc3339_ms(at_ms))
    await store.put_checkpoint(checkpoint, writer=writer.chain_id, at_ms=at_ms)
    return checkpoint


def signature_checker(
    public_keys: Iterable[Mapping[str, Any]],
) -> Callable[[Mapping[str, Any]], bool]:
    """A ``verify_signature`` for :func:`tracing.verify_chains` from JWKs (OKP/Ed25519)."""
    by_kid: dict[str, Ed25519PublicKey] = {}
    for jwk in public_keys:
        if (
            jwk.get("kty") == "OKP"
            and jwk.get("crv") == "Ed25519"
            and isinstance(jwk.get("x"), str)
        ):
            by_kid[str(jwk.get("kid"))] = Ed25519PublicKey.from_public_bytes(
                b64url_decode(jwk["x"])
            )

    def check(checkpoint: Mapping[str, Any]) -> bool:
        key = by_kid.get(str(checkpoint.get("kid")))
        signature = checkpoint.get("signature")
        if key is None or not isinstance(signature, str):
            return False
        try:
            key.verify(b64url_decode(signature), checkpoint_signing_bytes(checkpoint))
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    return check


def verify_lineage(
    events: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]],
    public_keys: Iterable[Mapping[str, Any]] | None,
) -> ChainReport:
    """Every chain recomputed, every checkpoint checked against them; signatures too
    when ``public_keys`` is given (an unknown ``kid`` counts as a bad signature)."""
    check = None if public_keys is None else signature_checker(public_keys)
    return verify_chains(events, checkpoints, verify_signature=check)
