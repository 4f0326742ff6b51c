"""A tiny synchronous client of the operator API for the CLI (stdlib only: fast start).

Usage::

    api = Remote.from_env(args.url)
    data = api.call("POST", "/admin/kill-switches", {"scope": "global", ...})   # RemoteError
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["Remote", "RemoteError"]


class RemoteError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Remote:
    url: str
    token: str

    @classmethod
    def from_env(cls, url: str | None) -> Remote:
        base = (url or os.environ.get("CASEGATE_URL") or "http://127.0.0.1:8080").rstrip("/")
        token = os.environ.get("CASEGATE_TOKEN", "")
        if not token:
            raise RemoteError(0, "no_token", "set CASEGATE_TOKEN to an operator token")
        return cls(base, token)

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                raise RemoteError(exc.code, err.get("code", ""), err.get("message", "")) from None
            except (ValueError, KeyError, TypeError):
                raise RemoteError(
                    exc.code, "http_error", raw[:200].decode(errors="replace")
                ) from None
        except urllib.error.URLError as exc:
            raise RemoteError(0, "unreachable", f"{self.url}: {exc.reason}") from None
        return json.loads(raw) if raw else None
