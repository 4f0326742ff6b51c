"""Detect PII in free text and replace it with the case's placeholders.

    redactor = Redactor(["EMAIL", "PHONE"])          # once per use case
    vault = Vault()
    out = redactor.redact("Mail ana@example.com", vault)
    out.text, dict(out.counts)                       # "Mail <EMAIL_1>", {"EMAIL": 1}

How a text is scanned: one normalised view (NFKC, invisible characters dropped, any
script's digits as ASCII; ASCII text is its own view) with a map back to the original.
Number-based recognizers only see the regions around digit clusters with enough
digits; e-mail and IPv6 recognizers find their own anchors ("@", spelled "at"/"dot",
colons). Overlapping spans resolve to the longest (then the earlier entity in
`ENTITIES_ORDER`). Spans are replaced on the original text, whose invisible
characters are dropped. Placeholder-shaped text ("<EMAIL_3>") is never detected.

The result is a fixed point: if replacing changed the text, it is scanned again (a
placeholder is a new neighbour for the text around it), so redacting twice equals
redacting once. Any failure inside a detector is raised as `RedactionError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import RedactionError, UnknownEntityError
from .recognizers import BUILTIN, Recognizer
from .text import View, normalise, strip_invisible
from .vault import PLACEHOLDER, Vault

__all__ = ["ENTITIES", "ENTITIES_ORDER", "Redacted", "Redactor"]

# Priority when two spans of equal length overlap: the more specific format first.
ENTITIES_ORDER = ("EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "UK_NINO", "IP_ADDRESS", "PHONE")
ENTITIES: frozenset[str] = frozenset(ENTITIES_ORDER)

# Digits no more than 12 characters apart form one cluster; a region is a cluster with
# 48 characters of context on each side (the widest keyword window a recognizer reads),
# widened to whitespace so no token is cut.
_CLUSTER = re.compile(r"[0-9](?:[^0-9\n]{0,12}[0-9])*")
_MARGIN = 48
_DROP_DIGITS = str.maketrans("", "", "0123456789")
_NON_DIGIT_BYTES = bytes(b for b in range(256) if not 48 <= b <= 57)
_MAX_ROUNDS = 8


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: Mapping[str, int] = field(default_factory=dict)  # entities replaced in this text


@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    end: int
    entity: str
    rank: int


class Redactor:
    """The compiled detector set of one use case."""

    def __init__(self, entities: Iterable[str], *, extra: Sequence[Recognizer] = ()) -> None:
        names = set(entities)
        unknown = sorted(names - ENTITIES)
        if unknown:
            raise UnknownEntityError(f"no detector for entities: {', '.join(unknown)}")
        ranks = {name: i for i, name in enumerate(ENTITIES_ORDER)}
        digit_based: list[tuple[Recognizer, int, int]] = []
        anywhere: list[tuple[Recognizer, int]] = []
        for name in ENTITIES_ORDER:
            if name in names:
                for rec in BUILTIN[name]:
                    min_digits = getattr(rec, "min_digits", 0)
                    if min_digits:
                        digit_based.append((rec, ranks[name], min_digits))
                    else:
                        anywhere.append((rec, ranks[name]))
        for rec in extra:
            if PLACEHOLDER.fullmatch(f"<{rec.entity}_1>") is None:
                raise UnknownEntityError(f"entity names are upper-case identifiers: {rec.entity!r}")
            anywhere.append((rec, ranks.get(rec.entity, len(ranks))))
        self.entities = frozenset(names | {rec.entity for rec in extra})
        self._digit_based = tuple(digit_based)
        self._anywhere = tuple(anywhere)
        self._fewest_digits = min((m for _, _, m in digit_based), default=0)

    def redact(self, text: str, vault: Vault) -> Redacted:
        """Replace every detected value by its placeholder in `vault`."""
        counts: dict[str, int] = {}
        current = text
        try:
            for _ in range(_MAX_ROUNDS):
                view = normalise(current)
                found = self._detect(view)
                if not found:
                    return Redacted(strip_invisible(current), counts)
                current = self._replace(view, found, vault, counts)
        except RedactionError:
            raise
        except Exception as exc:  # any detector bug fails the call closed
            raise RedactionError(f"a detector failed: {type(exc).__name__}") from exc
        raise RedactionError("redaction did not reach a fixed point")

    def detect(self, text: str) -> list[tuple[str, int, int]]:
        """(entity, start, end) of what one pass finds, as offsets into `text`.

        For dry runs and the benchmark; `redact` is what protects a call.
        """
        try:
            view = normalise(text)
            return [(f.entity, *view.span(f.start, f.end)) for f in self._detect(view)]
        except RedactionError:
            raise
        except Exception as exc:
            raise RedactionError(f"a detector failed: {type(exc).__name__}") from exc

    def _detect(self, view: View) -> list[_Found]:
        text = view.text
        found: list[_Found] = []
        for rec, rank in self._anywhere:
            found.extend(_spans(rec, text, 0, rank))
        if self._digit_based:
            for start, end, digits in _regions(text, self._fewest_digits):
                region = text[start:end]
                for rec, rank, min_digits in self._digit_based:
                    if digits >= min_digits:
                        found.extend(_spans(rec, region, start, rank))
        if not found:
            return found
        if "<" in text:
            protected = [m.span() for m in PLACEHOLDER.finditer(text)]
            found = [f for f in found if not any(f.start < e and s < f.end for s, e in protected)]
        return _resolve(found)

    @staticmethod
    def _replace(view: View, found: list[_Found], vault: Vault, counts: dict[str, int]) -> str:
        original = view.original
        out: list[str] = []
        last = 0
        for f in found:
            start, end = view.span(f.start, f.end)
            out.append(strip_invisible(original[last:start]))
            out.append(vault.placeholder(f.entity, strip_invisible(original[start:end])))
            counts[f.entity] = counts.get(f.entity, 0) + 1
            last = end
        out.append(strip_invisible(original[last:]))
        return "".join(out)


def _spans(rec: Recognizer, text: str, offset: int, rank: int) -> Iterable[_Found]:
    entity = rec.entity
    size = len(text)
    for start, end in rec.find(text):
        if not 0 <= start < end <= size:
            raise RedactionError(f"recognizer for {entity} returned an invalid span")
        yield _Found(start + offset, end + offset, entity, rank)


def _regions(text: str, fewest: int) -> list[tuple[int, int, int]]:
    """(start, end, digit count) of the merged regions around digit clusters."""
    regions: list[tuple[int, int, int]] = []
    if text.isascii() and len(text.encode().translate(None, _NON_DIGIT_BYTES)) < fewest:
        return regions  # too few digits for any recognizer: skip the cluster scan
    size = len(text)
    for m in _CLUSTER.finditer(text):
        cluster = m.group()
        digits = len(cluster) - len(cluster.translate(_DROP_DIGITS))
        start = max(0, m.start() - _MARGIN)
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        end = min(size, m.end() + _MARGIN)
        while end < size and not text[end].isspace():
            end += 1
        if regions and start <= regions[-1][1]:
            prev_start, _, prev_digits = regions[-1]
            regions[-1] = (prev_start, end, prev_digits + digits)
        else:
            regions.append((start, end, digits))
    return [r for r in regions if r[2] >= fewest]


def _resolve(found: list[_Found]) -> list[_Found]:
    """Keep non-overlapping spans, longest first (then by entity priority), in text order."""
    kept: list[_Found] = []
    for f in sorted(found, key=lambda f: (f.start - f.end, f.rank, f.start)):
        if all(f.end <= k.start or k.end <= f.start for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept
