"""A local OTLP/HTTP sink: accepts every export and discards it.

    python -m bench.compare.otlp_sink --port 4318

``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` read the body and answer 200 with an
empty protobuf message (a valid ``Export*ServiceResponse``: full success). It counts the
exports and their bytes and prints the totals to stdout on SIGTERM, so the run can say
that export was on. Runs as its own process, so its CPU is not counted against Casegate.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

from aiohttp import web


def build_app(counts: dict[str, int]) -> web.Application:
    async def export(request: web.Request) -> web.Response:
        body = await request.read()
        kind = request.match_info["kind"]
        counts[kind] = counts.get(kind, 0) + 1
        counts[kind + "_bytes"] = counts.get(kind + "_bytes", 0) + len(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counts)

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/{kind:traces|metrics|logs}", export)
    app.router.add_get("/stats", stats)
    return app


async def serve(port: int) -> None:
    counts: dict[str, int] = {}
    runner = web.AppRunner(build_app(counts), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    print(f"exports: {counts}", flush=True)
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare.otlp_sink")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
