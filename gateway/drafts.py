"""Drafts awaiting human approval: store, read, decide, expire (DESIGN.md sections 3-4).

Usage::

    drafts = DraftService(rt.store, rt.keys, rt.lineage)
    pending = drafts.plan(expires_after_s=86400)        # id + expiry, before the reply
    await drafts.store(pending, DraftContent(...))       # durable before the last byte
    await drafts.for_client(draft_id, client="helpdesk") # GET /v1/drafts/{id}
    await drafts.queue("pending", cursor=None)           # GET /admin/drafts
    await drafts.approve(draft_id, by="ann", edited_text=None)  # {release_token, text}
    await drafts.reject(draft_id, by="ann", reason="wrong tone")
    await drafts.expire_due()                            # the periodic sweep

Texts (the draft and the customer turns it answers, later the approved text) are
encrypted with the data key, bound to the draft id. Every decision, the system's
expiry included, is a compare-and-set on ``status = 'pending'`` followed by one
``approval.decided`` lineage event on the draft's lineage id, with data
``{draft_id, decision, by, reason?, edited, edit_distance, latency_ms, at_ms}``: the
scorecard reads exactly these. An expired or rejected draft never yields a token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.keys import KeyMaterial
from gateway.lineage import LineageWriter
from gateway.releases import mint_release_token
from gateway.stores.base import StateStore, StateUnavailable, StoredDraft
from tracing import rfc3339_ms

__all__ = [
    "DRAFT_STATUSES",
    "DraftAlreadyDecided",
    "DraftContent",
    "DraftErased",
    "DraftExpired",
    "DraftService",
    "PendingDraft",
    "customer_turns",
    "edit_distance",
]

log = logging.getLogger("casegate.drafts")

DRAFT_STATUSES = ("pending", "approved", "rejected", "expired")
SWEEP_INTERVAL_S = 30.0
_PAGE = 50


class DraftAlreadyDecided(Conflict):
    default_code = "draft_already_decided"


class DraftExpired(Conflict):
    default_code = "draft_expired"


class DraftErased(Conflict):
    default_code = "draft_erased"


def now_ms() -> int:
    return int(time.time() * 1000)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance over code points (Hyyrö's bit-parallel form of Myers' method).

    Python's unbounded ints make each row one handful of big-int operations, so two
    5,000-character texts take milliseconds rather than the seconds of the textbook
    dynamic programme.
    """
    if a == b:
        return 0
    # common prefix and suffix cost nothing
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & full) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def customer_turns(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The texts of the user messages, as the client sent them (text parts joined)."""
    out: list[str] = []
    for msg in messages:
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.append(
                "\n".join(
                    p["text"]
                    for p in content
                    if isinstance(p, dict)
                    and p.get("type") == "text"
                    and isinstance(p.get("text"), str)
                )
            )
    return out


@dataclass(frozen=True)
class PendingDraft:
    """A draft's id and expiry, known before the reply is (so a stream can name it)."""

    id: str
    created_ms: int
    expires_ms: int

    def approval(self) -> dict[str, Any]:
        return {"id": self.id, "status": "pending", "expires_at": rfc3339_ms(self.expires_ms)}


@dataclass(frozen=True)
class DraftContent:
    client: str
    lineage_id: str
    case_id: str | None
    use_case: str
    model: str | None
    redactions: dict[str, int]
    text: str
    turns: list[str]


def _encode_cursor(d: StoredDraft) -> str:
    return base64.urlsafe_b64encode(f"{d.created_ms}:{d.id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, last = raw.partition(":")
        if not last:
            raise ValueError
        return int(created), last
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("Invalid cursor", param="cursor") from None


class DraftService:
    def __init__(self, store: StateStore, keys: KeyMaterial, lineage: LineageWriter) -> None:
        self.store = store
        self.keys = keys
        self.lineage = lineage

    # -- creating ------------------------------------------------------------
    @staticmethod
    def plan(expires_after_s: int) -> PendingDraft:
        created = now_ms()
        return PendingDraft(
            f"dft_{secrets.token_hex(12)}", created, created + expires_after_s * 1000
        )

    async def store_draft(self, pending: PendingDraft, content: DraftContent) -> None:
        plain = orjson.dumps({"text": content.text, "turns": content.turns})
        await self.store.put_draft(
            StoredDraft(
                id=pending.id,
                client=content.client,
                lineage_id=content.lineage_id,
                case_id=content.case_id,
                use_case=content.use_case,
                model=content.model,
                redactions=dict(content.redactions),
                created_ms=pending.created_ms,
                expires_ms=pending.expires_ms,
                status="pending",
                texts=self.keys.encrypt(plain, aad=self._aad(pending.id)),
            )
        )

    # -- reading -------------------------------------------------------------
    @staticmethod
    def _aad(draft_id: str, part: str = "") -> bytes:
        return b"draft:" + draft_id.encode() + part.encode()

    def _texts(self, d: StoredDraft) -> dict[str, Any] | None:
        if not d.texts:
            return None  # erased
        try:
            data: dict[str, Any] = orjson.loads(self.keys.decrypt(d.texts, aad=self._aad(d.id)))
        except Exception:
            raise StateUnavailable("A draft's texts cannot be decrypted") from None
        return data

    def _approved(self, d: StoredDraft) -> str | None:
        if not d.approved_text:
            return None
        try:
            return self.keys.decrypt(d.approved_text, aad=self._aad(d.id, "#approved")).decode()
        except Exception:
            raise StateUnavailable("A draft's approved text cannot be decrypted") from None

    async def _get(self, draft_id: str) -> StoredDraft:
        d = await self.store.get_draft(draft_id)
        if d is None:
            raise NotFound(f"No draft {draft_id!r}", code="not_found")
        return d

    async def for_client(self, draft_id: str, client: str) -> dict[str, Any]:
        """``GET /v1/drafts/{id}``; another client's draft is 404 like a missing one."""
        d = await self.store.get_draft(draft_id)
        if d is None or d.client != client:
            raise NotFound(f"No draft {draft_id!r}", code="not_found")
        d = await self._expire_if_due(d)
        out: dict[str, Any] = {
            "id": d.id,
            "status": d.status,
            "expires_at": rfc3339_ms(d.expires_ms),
        }
        if d.decided_ms is not None:
            out["decided_at"] = rfc3339_ms(d.decided_ms)
        if d.status == "approved":
            text = self._approved(d)
            if text is not None:
                out["text"] = text
            out["release_token"] = d.release_token
        if d.status == "rejected" and d.reason:
            out["reason"] = d.reason
        return out

    async def queue(self, status: str | None, cursor: str | None) -> dict[str, Any]:
        """``GET /admin/drafts``: oldest first, with the texts an approver judges."""
        status = status or "pending"
        if status not in DRAFT_STATUSES:
            raise InvalidRequest(
                f"status must be one of {', '.join(DRAFT_STATUSES)}", param="status"
            )
        after = _decode_cursor(cursor) if cursor else None
        await self.expire_due()  # the queue never shows a draft past its expiry as pending
        rows = await self.store.list_drafts(status, after=after, limit=_PAGE)
        items = []
        for d in rows:
            if d.status == "pending" and d.expires_ms <= now_ms():
                d = await self._expire_if_due(d)
                continue
            items.append(self._item(d))
        return {
            "data": items,
            "next_cursor": _encode_cursor(rows[-1]) if len(rows) == _PAGE else None,
        }

    def _item(self, d: StoredDraft) -> dict[str, Any]:
        texts = self._texts(d)
        item: dict[str, Any] = {
            "id": d.id,
            "status": d.status,
            "case_id": d.case_id,
            "use_case": d.use_case,
            "client": d.client,
            "lineage_id": d.lineage_id,
            "model": d.model,
            "redactions": d.redactions,
            "created_at": rfc3339_ms(d.created_ms),
            "expires_at": rfc3339_ms(d.expires_ms),
            "customer_turns": texts["turns"] if texts else [],
            "text": texts["text"] if texts else None,
            "erased": texts is None,
        }
        if d.decided_ms is not None:
            item.update(decided_at=rfc3339_ms(d.decided_ms), decided_by=d.decided_by)
        if d.reason:
            item["reason"] = d.reason
        if d.status == "approved":
            item["approved_text"] = self._approved(d)
        return item

    # -- deciding ------------------------------------------------------------
    async def approve(self, draft_id: str, *, by: str, edited_text: str | None) -> dict[str, Any]:
        d = await self._check_pending(await self._get(draft_id))
        texts = self._texts(d)
        if texts is None and edited_text is None:
            raise DraftErased("This draft's texts were erased; approve it only with an edited_text")
        original = texts["text"] if texts else ""
        final = original if edited_text is None else edited_text
        edited = final != original
        decided = now_ms()
        token = mint_release_token(
            self.keys,
            draft_id=d.id,
            lineage_id=d.lineage_id,
            case_id=d.case_id,
            text=final,
            issued_s=decided // 1000,
        )
        won = await self.store.decide_draft(
            d.id,
            status="approved",
            decided_ms=decided,
            decided_by=by,
            approved_text=self.keys.encrypt(final.encode(), aad=self._aad(d.id, "#approved")),
            release_token=token,
            unexpired_at_ms=decided,
        )
        if not won:
            await self._lost(d.id)
        await self._record(
            d,
            "approved",
            by=by,
            decided_ms=decided,
            edited=edited,
            distance=edit_distance(original, final) if edited else 0,
        )
        return {
            "id": d.id,
            "status": "approved",
            "release_token": token,
            "text": final,
            "decided_at": rfc3339_ms(decided),
        }

    async def reject(self, draft_id: str, *, by: str, reason: str) -> dict[str, Any]:
        d = await self._check_pending(await self._get(draft_id))
        decided = now_ms()
        won = await self.store.decide_draft(
            d.id,
            status="rejected",
            decided_ms=decided,
            decided_by=by,
            reason=reason,
            unexpired_at_ms=decided,
        )
        if not won:
            await self._lost(d.id)
        await self._record(d, "rejected", by=by, decided_ms=decided, reason=reason)
        return {"id": d.id, "status": "rejected", "decided_at": rfc3339_ms(decided)}

    async def _check_pending(self, d: StoredDraft) -> StoredDraft:
        d = await self._expire_if_due(d)
        if d.status == "expired":
            raise DraftExpired(f"Draft {d.id!r} expired at {rfc3339_ms(d.expires_ms)}")
        if d.status != "pending":
            raise DraftAlreadyDecided(f"Draft {d.id!r} is already {d.status}")
        return d

    async def _lost(self, draft_id: str) -> None:
        """Another decision (or the expiry) won the compare-and-set: say which."""
        await self._check_pending(await self._get(draft_id))
        raise DraftAlreadyDecided(f"Draft {draft_id!r} was decided concurrently")

    async def _record(
        self,
        d: StoredDraft,
        decision: str,
        *,
        by: str,
        decided_ms: int,
        reason: str | None = None,
        edited: bool = False,
        distance: int = 0,
    ) -> None:
        data: dict[str, Any] = {
            "draft_id": d.id,
            "decision": decision,
            "by": by,
            "edited": edited,
            "edit_distance": distance,
            "latency_ms": max(0, decided_ms - d.created_ms),
            "at_ms": decided_ms,
        }
        if reason is not None:
            data["reason"] = reason
        await self.lineage.event("approval.decided", d.lineage_id, data)

    # -- expiry --------------------------------------------------------------
    async def _expire_if_due(self, d: StoredDraft) -> StoredDraft:
        if d.status != "pending" or d.expires_ms > now_ms():
            return d
        # decided at the moment it expired, whoever notices first
        if await self.store.decide_draft(
            d.id, status="expired", decided_ms=d.expires_ms, decided_by="system"
        ):
            await self._record(d, "expired", by="system", decided_ms=d.expires_ms)
        return await self._get(d.id)

    async def expire_due(self, limit: int = 100) -> int:
        count = 0
        for d in await self.store.due_drafts(now_ms(), limit=limit):
            if await self.store.decide_draft(
                d.id, status="expired", decided_ms=d.expires_ms, decided_by="system"
            ):
                await self._record(d, "expired", by="system", decided_ms=d.expires_ms)
                count += 1
        return count

    async def sweep_forever(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        """Expire undecided drafts in the background, so the scorecard counts them
        even when nobody looks at them (every worker sweeps; the compare-and-set makes
        one of them write each event)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.expire_due()
            except Exception:
                log.warning("draft expiry sweep failed; retrying in %ss", interval_s)
