"""The load generator: a separate process, driven over stdin/stdout with JSON lines.

Each input line is a job ``{"url", "headers", "body", "stream", "concurrency",
"requests", "expect"?}`` (``expect``: bytes every 200 answer must contain); the answer
is one line ``{"ok", "errors", "elapsed_s", "latencies_ms", "first_error", "client_cpu_s"}``
(the last: the load generator's own CPU over the job). Keeping
the process (and its pooled connections per url and concurrency) alive between the
warm-up and the measured run lets the orchestrator read the server's CPU counters
exactly around the measured requests.

Optional job keys (``bench.compare``): ``duration_s`` stops issuing new requests after
that many seconds (``requests`` then only caps the count); ``variants``, a list of
``{"headers", "body", "expect"?}``, makes a mix: request *i* sends variant
``i % len(variants)`` (its headers over the job's). Streamed answers also give
``ttfc_ms``: request start to the first body bytes holding ``data:``.

The client is a plain HTTP/1.1 keep-alive connection per worker (asyncio + httptools), a
third to half of aiohttp's CPU per request: the servers under test share the machine with it.

Bodies holding `workload.TURN` get eight letters there that no other request of this process
sends (a new turn of the conversation each time: see `bench/gateway/workload.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httptools

from bench.gateway.workload import TURN, turn

DONE = b"data: [DONE]"
_TURNS = itertools.count()
TIMEOUT_S = 30.0


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, answers parsed by
    httptools (Content-Length or chunked). Cheaper per request than aiohttp's client, so
    that less of the machine's CPU goes to measuring (the servers under test share it)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.parts: list[bytes] = []
        self.first: list[float] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP answer: {exc}"))

    def on_body(self, body: bytes) -> None:
        first = self.first
        if first is not None and not first and b"data:" in body:
            first.append(time.perf_counter())
        self.parts.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.parts)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection closed: {exc}"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def _timeout(self) -> None:
        self._fail(TimeoutError(f"no answer in {TIMEOUT_S:.0f} s"))

    async def request(self, data: bytes, first: list[float] | None) -> tuple[int, bytes]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.parts = []
        self.first = first
        self.waiter = loop.create_future()
        timer = loop.call_later(TIMEOUT_S, self._timeout)
        self.transport.write(data)
        try:
            return await self.waiter
        finally:
            timer.cancel()


class _Pool:
    """`size` connections to one server, each used by one of a job's workers."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.conns: list[_Conn | None] = [None] * size

    async def get(self, i: int) -> _Conn:
        conn = self.conns[i]
        if conn is None or conn.closed:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, self.host, self.port)
            self.conns[i] = conn
        return conn

    def head(self, headers: dict[str, str]) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode()

    def close(self) -> None:
        for conn in self.conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()


def _check(status: int, data: bytes, stream: bool, expect: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {data[:200]!r}"
    if stream:
        if DONE not in data[-64:]:
            return f"stream without [DONE]: {data[-200:]!r}"
    elif b'"choices"' not in data:
        return f"no choices: {data[:200]!r}"
    if expect and expect not in data:
        return f"no {expect!r} in the answer: {data[:200]!r}"
    return None


async def run_job(pools: dict[tuple[str, int], _Pool], job: dict[str, Any]) -> dict[str, Any]:
    url, conc = job["url"], int(job["concurrency"])
    total = int(job.get("requests", 10**9))
    deadline = time.perf_counter() + float(job.get("duration_s", 1e9))
    key = (url, conc)
    if key not in pools:
        pools[key] = _Pool(url, conc)
    pool = pools[key]
    headers = {"Content-Type": "application/json", **job["headers"]}
    body = job["body"].encode()
    stream = bool(job["stream"])
    expect = job.get("expect", "").encode()
    variants = [
        (
            pool.head(headers | v.get("headers", {})),
            v["body"].encode(),
            v.get("expect", "").encode(),
        )
        for v in job.get("variants", ())
    ] or [(pool.head(headers), body, expect)]
    turns = any(TURN.encode() in v[1] for v in variants)
    ttfcs: list[float] = []
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    issued = 0

    async def worker(i: int) -> None:
        nonlocal issued, errors, first_error
        while issued < total and time.perf_counter() < deadline:
            v_head, v_body, v_expect = variants[issued % len(variants)]
            issued += 1
            if turns:
                v_body = turn(v_body, next(_TURNS))
            data = b"%s%d\r\n\r\n%s" % (v_head, len(v_body), v_body)
            first: list[float] | None = [] if stream else None
            t0 = time.perf_counter()
            try:
                conn = await pool.get(i)
                status, answer = await conn.request(data, first)
                err = _check(status, answer, stream, v_expect)
            except (OSError, TimeoutError) as exc:
                err = f"{type(exc).__name__}: {exc}"
            latencies.append((time.perf_counter() - t0) * 1000)
            if first:
                ttfcs.append((first[0] - t0) * 1000)
            if err is not None:
                errors += 1
                first_error = first_error or err

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(conc)))
    elapsed = time.perf_counter() - start
    return {
        "client_cpu_s": time.process_time() - cpu,  # this process's own CPU over the job
        "ok": len(latencies) - errors,
        "errors": errors,
        "elapsed_s": elapsed,
        "latencies_ms": latencies,
        "ttfc_ms": ttfcs,
        "first_error": first_error,
    }


async def serve() -> None:
    loop = asyncio.get_running_loop()
    pools: dict[tuple[str, int], _Pool] = {}
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return  # EOF or an empty line: done
            result = await run_job(pools, json.loads(line))
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        for pool in pools.values():
            pool.close()


def main() -> int:
    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
