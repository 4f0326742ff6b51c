"""The consent service of record (DESIGN.md section 6), cached per customer.

Usage::

    consent = ConsentClient.from_settings(settings.consent_service, os.environ, source=...)
    consent.start()                                    # on the event loop
    purposes = await consent.consent_for("cust-42")    # {"ai_assist": True, ...}
    await consent.close()

``GET {url}?customer_id=…`` (``Authorization: Bearer`` the key from ``api_key_env``
when set) must answer 200 ``{"consent": {purpose: bool, ...}}`` within ``timeout_ms``.
An answer is cached for ``ttl_s``, keyed by a hash of the customer id. Anything else
— unreachable, a timeout, another status, a malformed answer — raises
:class:`ConsentUnavailable` (503 ``consent_unavailable``): the gateway never falls
back to the consent a request claims, nor to a cached answer past its TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.errors import Unavailable
from gateway.settings import ConsentServiceConfig, read_env_secrets

__all__ = ["ConsentClient", "ConsentUnavailable"]

#: Customers whose answer is kept; the least recently used is dropped past this.
CACHE_SIZE = 50_000


class ConsentUnavailable(Unavailable):
    default_code = "consent_unavailable"


class ConsentClient:
    def __init__(self, url: str, *, token: str | None, ttl_s: float, timeout_ms: int) -> None:
        self.url = url
        self.token = token
        self.ttl_s = ttl_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None
        self._cache: OrderedDict[str, tuple[float, dict[str, bool]]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[dict[str, bool]]] = {}

    @classmethod
    def from_settings(
        cls, cfg: ConsentServiceConfig, environ: Mapping[str, str], *, source: str
    ) -> ConsentClient:
        token = None
        if cfg.api_key_env is not None:
            token = read_env_secrets(
                cfg.api_key_env, path="consent_service.api_key_env", environ=environ, source=source
            )[0]
        return cls(cfg.url, token=token, ttl_s=cfg.ttl_s, timeout_ms=cfg.timeout_ms)

    def start(self) -> None:
        """Open the connection pool (call on the running event loop)."""
        self._session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def consent_for(self, customer_id: str) -> dict[str, bool]:
        key = hashlib.sha256(customer_id.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > time.monotonic():
                self._cache.move_to_end(key)
                return dict(cached[1])
            del self._cache[key]  # stale: only a fresh answer will do
        # one request per customer at a time; concurrent calls share its answer
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(customer_id))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        consent = await asyncio.shield(pending)
        self._cache[key] = (time.monotonic() + self.ttl_s, consent)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return dict(consent)

    async def _fetch(self, customer_id: str) -> dict[str, bool]:
        if self._session is None:
            raise ConsentUnavailable("The consent service client is not started")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self._session.get(
                self.url, params={"customer_id": customer_id}, headers=headers
            ) as resp:
                if resp.status != 200:
                    raise ConsentUnavailable(
                        f"The consent service answered {resp.status}; the consent of record "
                        "cannot be established"
                    )
                data: Any = await resp.json(content_type=None)
        except ConsentUnavailable:
            raise
        except TimeoutError:
            raise ConsentUnavailable("The consent service did not answer in time") from None
        except (aiohttp.ClientError, ValueError):
            raise ConsentUnavailable("The consent service cannot be reached") from None
        consent = data.get("consent") if isinstance(data, dict) else None
        if not isinstance(consent, dict) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in consent.items()
        ):
            raise ConsentUnavailable(
                'The consent service\'s answer is not {"consent": {purpose: boolean}}'
            )
        return consent
