"""Release tokens: what an approved draft carries to the messaging system that sends it.

Usage::

    token = mint_release_token(keys, draft_id=..., lineage_id=..., case_id=..., text=approved)
    keys.public_jwks()      # served at GET /.well-known/casegate-release-keys (no auth)

A release token is a compact JWS (RFC 7515) signed with the gateway's Ed25519 signing
key: header ``{"alg": "EdDSA", "kid": ..., "typ": "JWT"}``, claims ``{draft_id,
lineage_id, case_id, text_sha256, iat, exp}``. ``text_sha256`` is the lowercase hex
SHA-256 of the approved text's UTF-8 bytes, so a sender verifies offline, from the
JWKS alone, that the text it is about to send is exactly the text a human approved.
``iat``/``exp`` are integer seconds; a token is valid for :data:`RELEASE_TOKEN_TTL_S`
(24 hours) after the approval. Only approved drafts ever get one.
"""

from __future__ import annotations

import hashlib
import time

import orjson

from gateway.keys import KeyMaterial, b64url

__all__ = ["RELEASE_TOKEN_TTL_S", "mint_release_token", "text_sha256"]

#: How long a release token is valid after the approval, in seconds.
RELEASE_TOKEN_TTL_S = 24 * 3600


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mint_release_token(
    keys: KeyMaterial,
    *,
    draft_id: str,
    lineage_id: str,
    case_id: str | None,
    text: str,
    issued_s: int | None = None,
    ttl_s: int = RELEASE_TOKEN_TTL_S,
) -> str:
    iat = int(time.time()) if issued_s is None else issued_s
    header = {"alg": "EdDSA", "kid": keys.signing_kid, "typ": "JWT"}
    claims = {
        "draft_id": draft_id,
        "lineage_id": lineage_id,
        "case_id": case_id,
        "text_sha256": text_sha256(text),
        "iat": iat,
        "exp": iat + ttl_s,
    }
    signing_input = b64url(orjson.dumps(header)) + "." + b64url(orjson.dumps(claims))
    signature = keys.signing_key().sign(signing_input.encode("ascii"))
    return signing_input + "." + b64url(signature)
