"""Client keys and operator tokens: kept only as digests, compared in one place.

Usage::

    directory = Directory.build(settings, os.environ)
    client = directory.client_for(authorization_header)    # AuthenticationFailed
    operator = directory.operator_for(authorization_header)

Keys are high-entropy random strings, so an unsalted SHA-256 digest is the right
at-rest form (a slow password hash would buy nothing and cost CPU on every call).
:func:`digest_matches` is the only place a presented secret is compared, and it
compares against every digest with :func:`hmac.compare_digest`, so timing says
nothing about which (or whether any) digest matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway.errors import AuthenticationFailed
from gateway.settings import ConfigError, EnvNames, Settings, read_env_secrets

T = TypeVar("T")

__all__ = ["Client", "Directory", "Operator", "digest", "digest_matches"]


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def digest_matches(presented: str, digests: Sequence[bytes]) -> int | None:
    """Index of the digest ``presented`` hashes to, comparing against all of them."""
    candidate = digest(presented)
    found: int | None = None
    for index, known in enumerate(digests):
        if hmac.compare_digest(candidate, known) and found is None:
            found = index
    return found


@dataclass(frozen=True)
class Client:
    name: str
    use_cases: frozenset[str]


@dataclass(frozen=True)
class Operator:
    name: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True)
class Directory:
    client_digests: tuple[bytes, ...]
    client_owners: tuple[Client, ...]
    operator_digests: tuple[bytes, ...]
    operator_owners: tuple[Operator, ...]

    @classmethod
    def build(cls, settings: Settings, environ: Mapping[str, str], *, source: str) -> Directory:
        def digests(owners: Sequence[tuple[T, EnvNames, str]]) -> tuple[list[bytes], list[T]]:
            out_digests: list[bytes] = []
            out_owners: list[T] = []
            for owner, names, path in owners:
                for secret in read_env_secrets(names, path=path, environ=environ, source=source):
                    out_digests.append(digest(secret))
                    out_owners.append(owner)
            return out_digests, out_owners

        c_digests, c_owners = digests(
            [
                (Client(c.name, frozenset(c.use_cases)), c.key_env, f"clients[{i}].key_env")
                for i, c in enumerate(settings.clients)
            ]
        )
        o_digests, o_owners = digests(
            [
                (Operator(o.name, frozenset(o.roles)), o.token_env, f"operators[{i}].token_env")
                for i, o in enumerate(settings.operators)
            ]
        )
        if set(c_digests) & set(o_digests):
            raise ConfigError(f"{source}: a client key and an operator token must differ")
        return cls(tuple(c_digests), tuple(c_owners), tuple(o_digests), tuple(o_owners))

    def client_for(self, authorization: str | None) -> Client:
        token = bearer(authorization)
        if token is not None:
            index = digest_matches(token, self.client_digests)
            if index is not None:
                return self.client_owners[index]
        raise AuthenticationFailed(
            "Missing or unknown API key. Send 'Authorization: Bearer <client key>'."
        )

    def operator_for(self, authorization: str | None) -> Operator:
        token = bearer(authorization)
        if token is not None:
            index = digest_matches(token, self.operator_digests)
            if index is not None:
                return self.operator_owners[index]
        raise AuthenticationFailed(
            "Missing or unknown operator token. Send 'Authorization: Bearer <operator token>'."
        )
