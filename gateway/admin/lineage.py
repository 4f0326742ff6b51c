"""Operator endpoints: lineage, export, scorecard, erasure (DESIGN.md section 4).

Usage::

    routes()        # mounted under /admin by gateway.admin.admin_routes

``GET /admin/lineage`` answers records (the fold of their events, gateway/records.py)
oldest first, ``{data, next_cursor}``; a ``customer_id`` is hashed here, under every
valid customer-hash key, before the lookup, so a raw id is never stored or queried.
``GET /admin/lineage/export`` answers whole chains (every chain with an event in the
window or named by a checkpoint of the window), so that they verify offline from seq 1.
``GET /metrics`` (no authentication, Prometheus text) is mounted from here too.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import Operation, parse_body, require, runtime
from gateway.api import JSONBytes
from gateway.errors import InvalidRequest, NotFound
from gateway.metrics import metrics_route
from gateway.records import fold, fold_many, order_events
from gateway.runtime import Runtime
from gateway.scorecard import GROUPS, scorecard
from gateway.stores.base import RecordQuery, RecordRow
from tracing import rfc3339_ms

__all__ = ["OPERATIONS", "ErasureBody", "routes"]

DAY_MS = 86_400_000
FAR_PAST, FAR_FUTURE = 0, 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_LIMIT = 500
_CASE_ID = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$")


class ErasureBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


# -- query parameters -------------------------------------------------------------


def _params(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise InvalidRequest(
                f"Unknown query parameter {key!r} (allowed: {', '.join(allowed)})", param=key
            )
        if key in out:
            raise InvalidRequest(f"Query parameter {key!r} given twice", param=key)
        out[key] = value
    return out


def parse_time(value: str | None, param: str) -> int | None:
    """An ISO 8601 date (midnight UTC) or datetime (UTC unless it says otherwise) -> ms."""
    if value is None or value == "":
        return None
    text = value.strip().replace(" ", "+")  # an unencoded '+' in a query string
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            moment = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(
            f"'{param}' must be an ISO 8601 date or datetime, e.g. 2026-11-28 or "
            "2026-11-28T09:00:00Z",
            param=param,
        ) from None
    return int(moment.timestamp() * 1000)


def _window(q: Mapping[str, str], default_days: int | None) -> tuple[int | None, int | None]:
    start, end = parse_time(q.get("from"), "from"), parse_time(q.get("to"), "to")
    if default_days is not None:
        end = end if end is not None else int(time.time() * 1000)
        start = start if start is not None else end - default_days * DAY_MS
    if start is not None and end is not None and start > end:
        raise InvalidRequest("'from' must not be after 'to'", param="from")
    return start, end


def _encode_cursor(row: RecordRow) -> str:
    raw = orjson.dumps([row.started_ms, row.lineage_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(text: str) -> tuple[int, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        started, lineage_id = value
        if isinstance(started, int) and isinstance(lineage_id, str):
            return started, lineage_id
    except (ValueError, TypeError):
        pass
    raise InvalidRequest("'cursor' is not a cursor this endpoint returned", param="cursor")


def _limit(q: Mapping[str, str]) -> int:
    raw = q.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(raw)


async def load_records(rt: Runtime, rows: Sequence[RecordRow]) -> list[dict[str, Any]]:
    events = await rt.store.events_for_many([r.lineage_id for r in rows])
    folded = fold_many(events)
    return [folded[r.lineage_id] for r in rows if r.lineage_id in folded]


async def records_in_window(rt: Runtime, start: int, end: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after: tuple[int, str] | None = None
    while True:
        rows = await rt.store.query_records(
            RecordQuery(from_ms=start, to_ms=end, after=after, limit=1000)
        )
        out.extend(await load_records(rt, rows))
        if len(rows) < 1000:
            return out
        after = (rows[-1].started_ms, rows[-1].lineage_id)


# -- endpoints --------------------------------------------------------------------


async def list_records(request: Request) -> Response:
    require(request, "auditor")
    rt = runtime(request)
    q = _params(
        request,
        ("case_id", "customer_id", "from", "to", "use_case", "decision", "cursor", "limit"),
    )
    start, end = _window(q, None)
    hashes: tuple[str, ...] = ()
    if q.get("customer_id"):
        hashes = tuple(rt.keys.customer_hashes(q["customer_id"]))
    limit = _limit(q)
    rows = await rt.store.query_records(
        RecordQuery(
            case_id=q.get("case_id") or None,
            customer_hashes=hashes,
            from_ms=start,
            to_ms=end,
            use_case=q.get("use_case") or None,
            decision=q.get("decision") or None,
            after=_decode_cursor(q["cursor"]) if q.get("cursor") else None,
            limit=limit,
        )
    )
    data = await load_records(rt, rows)
    next_cursor = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return JSONBytes({"data": data, "next_cursor": next_cursor})


async def get_record(request: Request) -> Response:
    require(request, "auditor")
    rt = runtime(request)
    lineage_id = request.path_params["id"]
    events = await rt.store.events_for(lineage_id)
    if not events:
        raise NotFound(f"No lineage record {lineage_id!r}", param="id")
    return JSONBytes(fold(events))


async def export(request: Request) -> Response:
    require(request, "auditor")
    rt = runtime(request)
    q = _params(request, ("from", "to"))
    start, end = _window(q, None)
    start = FAR_PAST if start is None else start
    end = FAR_FUTURE if end is None else end
    # checkpoints first: every head they name is already stored when the events are read
    checkpoints = await rt.store.checkpoints(start, end)
    chains = set(await rt.store.chains_between(rfc3339_ms(start), rfc3339_ms(end)))
    for checkpoint in checkpoints:
        chains.update(checkpoint.get("chains") or {})
    events = order_events(await rt.store.chain_events(sorted(chains)))
    keys: dict[str, dict[str, Any]] = {k["kid"]: k for k in await rt.store.public_keys()}
    for jwk in rt.keys.public_jwks()["keys"]:
        keys.setdefault(jwk["kid"], jwk)
    return JSONBytes(
        {
            "from": rfc3339_ms(start),
            "to": rfc3339_ms(end),
            "events": events,
            "checkpoints": checkpoints,
            "public_keys": list(keys.values()),
        }
    )


async def get_scorecard(request: Request) -> Response:
    require(request, "auditor")
    rt = runtime(request)
    q = _params(request, ("from", "to", "group_by"))
    start, end = _window(q, 7)
    assert start is not None and end is not None
    group_by = q.get("group_by") or "use_case"
    if group_by not in GROUPS:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(GROUPS)}", param="group_by")
    records = await records_in_window(rt, start, end)
    return JSONBytes(scorecard(records, group_by=group_by, window=(start, end)))


async def erase_case(request: Request) -> Response:
    op = require(request, "admin")
    rt = runtime(request)
    body = await parse_body(request, ErasureBody)
    case_id = request.path_params["case_id"]
    if not _CASE_ID.match(case_id):
        raise InvalidRequest("A case id is 1 to 128 printable ASCII characters", param="case_id")
    maps = await rt.store.erase_vault(rt.keys.case_key(case_id))
    drafts = await rt.store.erase_draft_texts(case_id)
    at = int(time.time() * 1000)
    event = await rt.lineage.event(
        "case.erased",
        f"case:{case_id}",
        {
            "case_id": case_id,
            "by": op.name,
            "reason": body.reason,
            "pseudonym_maps": maps,
            "draft_texts": drafts,
            "at_ms": at,
        },
    )
    return JSONBytes(
        {
            "case_id": case_id,
            "erased": {"pseudonym_maps": maps, "draft_texts": drafts},
            "event": {"chain": event["chain"], "seq": event["seq"], "at": event["at"]},
        }
    )


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/lineage"): (
        "Lineage records by case, customer (hashed here), time, use case or decision; "
        "oldest first, {data, next_cursor}",
        "operator:auditor",
        None,
        (400, 401, 403),
    ),
    ("GET", "/admin/lineage/export"): (
        "Events (whole chains), signed checkpoints and public keys, for offline verification",
        "operator:auditor",
        None,
        (400, 401, 403),
    ),
    ("GET", "/admin/lineage/{id}"): (
        "One lineage record with its events",
        "operator:auditor",
        None,
        (401, 403, 404),
    ),
    ("GET", "/admin/scorecard"): (
        "The scorecard of DESIGN.md section 8, grouped by queue, segment or use case",
        "operator:auditor",
        None,
        (400, 401, 403),
    ),
    ("DELETE", "/admin/cases/{case_id}/personal-data"): (
        "Erase a case's pseudonym map and draft texts; writes a case.erased event",
        "operator:admin",
        ErasureBody,
        (400, 401, 403, 503),
    ),
    ("GET", "/metrics"): (
        "Prometheus text, summed over every worker process of this server",
        "none",
        None,
        (),
    ),
}


def routes() -> list[Route]:
    return [
        Route("/admin/lineage", list_records, methods=["GET"]),
        Route("/admin/lineage/export", export, methods=["GET"]),
        Route("/admin/lineage/{id}", get_record, methods=["GET"]),
        Route("/admin/scorecard", get_scorecard, methods=["GET"]),
        Route("/admin/cases/{case_id}/personal-data", erase_case, methods=["DELETE"]),
        metrics_route(),
    ]
