"""The load generator: a separate process, driven over stdin/stdout with JSON lines.

Each input line is a job ``{"url", "headers", "body", "stream", "concurrency",
"requests", "expect"?}`` (``expect``: bytes every 200 answer must contain); the answer
is one line ``{"ok", "errors", "elapsed_s", "latencies_ms", "first_error"}``. Keeping
the process (and its pooled connections per url and concurrency) alive between the
warm-up and the measured run lets the orchestrator read the server's CPU counters
exactly around the measured requests.

Optional job keys (``bench.compare``): ``duration_s`` stops issuing new requests after
that many seconds (``requests`` then only caps the count); ``variants``, a list of
``{"headers", "body", "expect"?}``, makes a mix: request *i* sends variant
``i % len(variants)`` (its headers over the job's). Streamed answers also give
``ttfc_ms``: request start to the first body bytes holding ``data:``.

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

import aiohttp

from bench.gateway.workload import TURN, turn

DONE = b"data: [DONE]"
_TURNS = itertools.count()


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    stream: bool,
    expect: bytes,
    first_chunk: list[float] | None = None,
) -> str | None:
    async with session.post(url, data=body, headers=headers) as resp:
        if stream and first_chunk is not None and resp.status == 200:
            parts: list[bytes] = []
            async for part in resp.content.iter_any():
                if not first_chunk and b"data:" in part:
                    first_chunk.append(time.perf_counter())
                parts.append(part)
            data = b"".join(parts)
        else:
            data = await resp.read()  # to EOF: for a stream, through the final [DONE]
        if resp.status != 200:
            return f"HTTP {resp.status}: {data[:200]!r}"
        if stream:
            if DONE not in data[-64:]:
                return f"stream without [DONE]: {data[-200:]!r}"
        elif b'"choices"' not in data:
            return f"no choices: {data[:200]!r}"
        if expect and expect not in data:
            return f"no {expect!r} in the answer: {data[:200]!r}"
    return None


async def run_job(sessions: dict[tuple[str, int], aiohttp.ClientSession], job: dict[str, Any]):
    url, conc = job["url"], int(job["concurrency"])
    total = int(job.get("requests", 10**9))
    deadline = time.perf_counter() + float(job.get("duration_s", 1e9))
    key = (url, conc)
    if key not in sessions:
        sessions[key] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=conc, force_close=False),
            timeout=aiohttp.ClientTimeout(total=30),
        )
    session = sessions[key]
    headers = {"Content-Type": "application/json", **job["headers"]}
    body = job["body"].encode()
    stream = bool(job["stream"])
    expect = job.get("expect", "").encode()
    variants = [
        (headers | v.get("headers", {}), v["body"].encode(), v.get("expect", "").encode())
        for v in job.get("variants", ())
    ] or [(headers, body, expect)]
    turns = any(TURN.encode() in v[1] for v in variants)
    ttfcs: list[float] = []
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    issued = 0

    async def worker() -> None:
        nonlocal issued, errors, first_error
        while issued < total and time.perf_counter() < deadline:
            v_headers, v_body, v_expect = variants[issued % len(variants)]
            issued += 1
            if turns:
                v_body = turn(v_body, next(_TURNS))
            first: list[float] = []
            t0 = time.perf_counter()
            try:
                err = await _one(session, url, v_headers, v_body, stream, v_expect, first)
            except (aiohttp.ClientError, TimeoutError) as exc:
                err = f"{type(exc).__name__}: {exc}"
            latencies.append((time.perf_counter() - t0) * 1000)
            if first:
                ttfcs.append((first[0] - t0) * 1000)
            if err is not None:
                errors += 1
                first_error = first_error or err

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    elapsed = time.perf_counter() - start
    return {
        "ok": len(latencies) - errors,
        "errors": errors,
        "elapsed_s": elapsed,
        "latencies_ms": latencies,
        "ttfc_ms": ttfcs,
        "first_error": first_error,
    }


async def serve() -> None:
    loop = asyncio.get_running_loop()
    sessions: dict[tuple[str, int], aiohttp.ClientSession] = {}
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return  # EOF or an empty line: done
            result = await run_job(sessions, json.loads(line))
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        for session in sessions.values():
            await session.close()


def main() -> int:
    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
