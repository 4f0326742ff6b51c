"""Operator endpoints: drafts (DESIGN.md section 4). Role ``approver`` for all three.

Usage::

    GET  /admin/drafts?status=pending&cursor=…      -> {data: [...], next_cursor}
    POST /admin/drafts/{id}/approve {edited_text?}  -> {id, status, release_token, text, decided_at}
    POST /admin/drafts/{id}/reject  {reason}        -> {id, status, decided_at}

The queue is oldest first and shows what an approver needs to judge a draft: the
customer turns it answers, the draft text, case id, use case, model, redaction counts
and expiry (texts decrypted here, never logged). Deciding twice is 409
``draft_already_decided``; a draft past its expiry is 409 ``draft_expired``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import Operation, parse_body, require, runtime
from gateway.api import JSONBytes

__all__ = ["OPERATIONS", "ApproveBody", "RejectBody", "routes"]


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edited_text: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="The text to release instead of the draft's (a manual override)",
    )


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


async def list_drafts(request: Request) -> Response:
    require(request, "approver")
    q = request.query_params
    page = await runtime(request).drafts.queue(q.get("status"), q.get("cursor"))
    return JSONBytes(page)


async def approve(request: Request) -> Response:
    op = require(request, "approver")
    body = await parse_body(request, ApproveBody)
    result = await runtime(request).drafts.approve(
        request.path_params["draft_id"], by=op.name, edited_text=body.edited_text
    )
    return JSONBytes(result)


async def reject(request: Request) -> Response:
    op = require(request, "approver")
    body = await parse_body(request, RejectBody)
    result = await runtime(request).drafts.reject(
        request.path_params["draft_id"], by=op.name, reason=body.reason
    )
    return JSONBytes(result)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/drafts"): (
        "The draft queue, oldest first, with the customer turns each draft answers",
        "approver",
        None,
        (400, 401, 403),
    ),
    ("POST", "/admin/drafts/{draft_id}/approve"): (
        "Approve a draft (optionally edited): answers its release token and text",
        "approver",
        ApproveBody,
        (400, 401, 403, 404, 409),
    ),
    ("POST", "/admin/drafts/{draft_id}/reject"): (
        "Reject a draft with a reason",
        "approver",
        RejectBody,
        (400, 401, 403, 404, 409),
    ),
}


def routes() -> list[Route]:
    return [
        Route("/admin/drafts", list_drafts, methods=["GET"]),
        Route("/admin/drafts/{draft_id}/approve", approve, methods=["POST"]),
        Route("/admin/drafts/{draft_id}/reject", reject, methods=["POST"]),
    ]
