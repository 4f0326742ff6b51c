"""Key material: the customer-hash key, the data key and the release-signing key.

Usage::

    keys = load_keys(settings, os.environ)        # from *_env, or casegate.keys.json
    ref = keys.customer_ref("cust-42")            # {"key_id": ..., "hash": ...}
    blob = keys.encrypt(b"...", aad=b"vault:case-1"); keys.decrypt(blob, aad=...)

Each key is 32 random bytes, base64url (the signing key is an Ed25519 seed). With a
list of secrets (rotation) the first one is current; the others still decrypt and
still verify. Every keyed hash and ciphertext carries the id of the key that made it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.settings import ConfigError, Settings, read_env_secrets

__all__ = ["KeyMaterial", "b64url", "b64url_decode", "load_keys"]

KEYS_FILE = "casegate.keys.json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(raw: bytes) -> str:
    return hashlib.sha256(b"casegate-key-id:" + raw).hexdigest()[:12]


def _decode_key(text: str, *, what: str) -> bytes:
    try:
        raw = b64url_decode(text.strip())
    except (ValueError, TypeError):
        raise ConfigError(f"{what}: not base64url") from None
    if len(raw) != 32:
        raise ConfigError(f"{what}: must be 32 bytes, base64url (got {len(raw)} bytes)")
    return raw


@dataclass(frozen=True)
class KeyMaterial:
    customer_hash: tuple[bytes, ...]
    data: tuple[bytes, ...]
    signing: tuple[bytes, ...]

    # -- customer references -------------------------------------------------
    @property
    def customer_key_id(self) -> str:
        return key_id(self.customer_hash[0])

    def customer_ref(self, customer_id: str) -> dict[str, str]:
        digest = hmac.new(self.customer_hash[0], customer_id.encode(), hashlib.sha256)
        return {"key_id": self.customer_key_id, "hash": digest.hexdigest()}

    def case_key(self, case_id: str) -> str:
        """The store key of a case's pseudonym map: keyed, so case ids are not indexed raw."""
        return hmac.new(
            self.customer_hash[0], b"case:" + case_id.encode(), hashlib.sha256
        ).hexdigest()

    def customer_hashes(self, customer_id: str) -> list[str]:
        """The hash under every valid key (lookups during a rotation)."""
        return [
            hmac.new(k, customer_id.encode(), hashlib.sha256).hexdigest()
            for k in self.customer_hash
        ]

    # -- encryption at rest --------------------------------------------------
    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        kid = key_id(self.data[0]).encode()
        return kid + b"." + nonce + AESGCM(self.data[0]).encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, *, aad: bytes) -> bytes:
        kid, _, rest = blob.partition(b".")
        for raw in self.data:
            if key_id(raw).encode() == kid:
                return AESGCM(raw).decrypt(rest[:12], rest[12:], aad)
        raise ValueError("no data key with this key id")

    # -- release signing -----------------------------------------------------
    def signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.signing[0])

    @property
    def signing_kid(self) -> str:
        return key_id(self.signing[0])

    def public_jwks(self) -> dict[str, Any]:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        keys = []
        for raw in self.signing:
            pub = Ed25519PrivateKey.from_private_bytes(raw).public_key()
            x = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": key_id(raw),
                    "x": b64url(x),
                }
            )
        return {"keys": keys}


def _generate_file(path: Path) -> dict[str, str]:
    data = {
        "customer_hash_key": b64url(secrets.token_bytes(32)),
        "data_key": b64url(secrets.token_bytes(32)),
        "signing_key": b64url(secrets.token_bytes(32)),
    }
    write_once(path, json.dumps(data, indent=2))
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def write_once(path: Path, text: str) -> None:
    """Create `path` (mode 0600) holding `text`, unless it exists: then it is kept.

    Several workers (or commands) may start at once on a fresh directory. Each writes a
    temp file of its own, syncs it, and links it into place; the link fails if another's
    file is already there. A temp name shared between them let one truncate and rewrite
    the file another had just linked and read: two workers, two sets of keys.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another's file is in place, whole: it is the one kept
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (the key file must outlive a crash as the
    data it encrypts does)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_keys(settings: Settings, environ: Mapping[str, str], *, source: str) -> KeyMaterial:
    if settings.keys is not None:
        k = settings.keys

        def read(names: Any, name: str) -> tuple[bytes, ...]:
            values = read_env_secrets(names, path=f"keys.{name}", environ=environ, source=source)
            return tuple(_decode_key(v, what=f"{source}: keys.{name}") for v in values)

        return KeyMaterial(
            customer_hash=read(k.customer_hash_env, "customer_hash_env"),
            data=read(k.data_key_env, "data_key_env"),
            signing=read(k.signing_key_env, "signing_key_env"),
        )
    if settings.is_postgres():
        raise ConfigError(
            f"{source}: keys: required with PostgreSQL state (replicas must share them)"
        )
    db = settings.sqlite_path()
    assert db is not None
    path = db.parent / KEYS_FILE
    if path.exists():
        data = json.loads(path.read_text())
    else:
        data = _generate_file(path)
    return KeyMaterial(
        customer_hash=(_decode_key(data["customer_hash_key"], what=str(path)),),
        data=(_decode_key(data["data_key"], what=str(path)),),
        signing=(_decode_key(data["signing_key"], what=str(path)),),
    )
