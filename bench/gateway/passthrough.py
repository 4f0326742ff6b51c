"""A bare OpenAI pass-through: the baseline Casegate's overhead is measured against.

    python -m bench.gateway.passthrough --port 9100 --upstream http://127.0.0.1:9000/v1

Starlette served by uvicorn (uvloop, httptools, access log off, one worker). Each
``POST /v1/chat/completions`` is forwarded as-is (body bytes, no parsing) to the upstream
over one pooled ``aiohttp.ClientSession``; the answer's status and body come back,
streamed chunk by chunk when the upstream answers with SSE.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Sequence

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def build_app(upstream: str) -> Starlette:
    url = upstream.rstrip("/") + "/chat/completions"
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=100, ttl_dns_cache=300)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        )
        state["session"] = session
        try:
            yield
        finally:
            await session.close()

    async def chat(request: Request) -> Response:
        body = await request.body()
        headers = {"Content-Type": "application/json"}
        auth = request.headers.get("authorization")
        if auth:
            headers["Authorization"] = auth
        resp = await state["session"].post(url, data=body, headers=headers)
        ctype = resp.headers.get("Content-Type", "application/json")
        if ctype.startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()

            return StreamingResponse(relay(), status_code=resp.status, media_type=ctype)
        try:
            data = await resp.read()
        finally:
            resp.release()
        return Response(data, status_code=resp.status, media_type=ctype)

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.passthrough")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000/v1")
    args = parser.parse_args(argv)
    uvicorn.run(
        build_app(args.upstream),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
