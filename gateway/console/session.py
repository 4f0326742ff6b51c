"""Console sessions: an HMAC-signed cookie naming the operator, and CSRF tokens.

Usage::

    sessions = Sessions.for_runtime(rt)
    cookie = sessions.issue(operator)              # after the token was checked
    session = sessions.read(request)               # Session | None (bad, expired, unknown)
    session.csrf                                   # the form token of this session
    sessions.check_csrf(session, form_value)       # False: refuse the post

The cookie holds ``{operator name, nonce, expiry}`` and an HMAC-SHA256 over it, keyed
by a key derived from the gateway's data key: never the operator token. Signed (not an
in-memory map) so every worker and replica accepts it. On each request the name is
looked up in the current operator directory, so roles always come from the config and
a removed operator is signed out at once. The CSRF token is a synchronizer token bound
to the session's nonce (HMAC again), so it needs no server state either. Sign-out
clears the cookie; a copied cookie stays valid until its expiry (``SESSION_TTL_S``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from starlette.requests import Request

from gateway.auth import Directory, Operator
from gateway.keys import b64url, b64url_decode
from gateway.runtime import Runtime

__all__ = ["COOKIE", "LOGIN_CSRF_COOKIE", "SESSION_TTL_S", "Session", "Sessions", "is_https"]

COOKIE = "casegate_console"
LOGIN_CSRF_COOKIE = "casegate_console_login"
SESSION_TTL_S = 8 * 3600
_LABEL = b"casegate-console-session-v1"


def is_https(request: Request) -> bool:
    """The request reached us over TLS. ``X-Forwarded-Proto: https`` counts too, as set
    by a TLS-terminating proxy in front of the gateway (deploy/ puts one there)."""
    if request.url.scheme == "https":
        return True
    return request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"


@dataclass(frozen=True)
class Session:
    operator: Operator
    nonce: str
    expires_s: int
    csrf: str


class Sessions:
    def __init__(self, keys: tuple[bytes, ...], directory: Directory) -> None:
        # the first key signs; every key still verifies (data-key rotation)
        self.keys = tuple(hmac.new(k, _LABEL, hashlib.sha256).digest() for k in keys)
        self.directory = directory

    @classmethod
    def for_runtime(cls, rt: Runtime) -> Sessions:
        return cls(rt.keys.data, rt.directory)

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()

    def _csrf(self, nonce: str) -> str:
        return b64url(self._mac(self.keys[0], b"csrf:" + nonce.encode()))

    def issue(self, operator: Operator, *, now_s: int | None = None) -> str:
        now = int(time.time()) if now_s is None else now_s
        payload = orjson.dumps(
            {"o": operator.name, "n": secrets.token_urlsafe(16), "e": now + SESSION_TTL_S}
        )
        return b64url(payload) + "." + b64url(self._mac(self.keys[0], payload))

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw or "." not in raw or len(raw) > 1024:
            return None
        body, _, sig = raw.partition(".")
        try:
            payload, mac = b64url_decode(body), b64url_decode(sig)
        except (ValueError, TypeError):
            return None
        if not any(hmac.compare_digest(self._mac(k, payload), mac) for k in self.keys):
            return None
        try:
            data = orjson.loads(payload)
            name, nonce, expires = str(data["o"]), str(data["n"]), int(data["e"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if expires <= time.time():
            return None
        operator = next((o for o in self.directory.operator_owners if o.name == name), None)
        if operator is None:
            return None
        return Session(operator, nonce, expires, self._csrf(nonce))

    @staticmethod
    def check_csrf(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf, str(presented))
