"""Detect PII in free text and replace it with the case's placeholders.

    redactor = Redactor(["EMAIL", "PHONE"])          # once per use case
    vault = Vault()
    out = redactor.redact("Mail ana@example.com", vault)
    out.text, dict(out.counts)                       # "Mail <EMAIL_1>", {"EMAIL": 1}

How a text is scanned: one normalised view (NFKC, invisible characters dropped, any
script's digits as ASCII; ASCII text is its own view) with a map back to the original.
Number-based recognizers read the text only at its digit clusters (found once per
scan, on a digit mask that leaves out placeholders and the inside of IPv6 addresses),
and run only when the text holds their `min_digits`; e-mail and IPv6 recognizers find
their own anchors ("@", spelled "at"/"dot", colons). Overlapping spans resolve to the
longest (then the earlier entity in `ENTITIES_ORDER`). Spans are replaced on the
original text, whose invisible characters are dropped. Placeholder-shaped text
("<EMAIL_3>") is never detected.

The result is a fixed point: if replacing changed the text, it is scanned again (a
placeholder is a new neighbour for the text around it), so redacting twice equals
redacting once. The confirming scans of the built-in recognizers read only the
stretches of text around the new placeholders (`_windows` says why that is enough),
and skip a stretch that holds no `ANCHOR` outside its placeholders (`_may_hold`); with
extra recognizers, whose reach is unknown, every scan reads the whole text. Any
failure inside a detector is raised as `RedactionError`.

Two bounded memos answer texts seen before (a conversation is resent whole on every
turn): texts in which nothing was found, with their output; and texts whose view is
themselves and that took one round, keyed by a keyed digest, with their spans' offsets,
the placeholders they got and the output. A hit on the second is replayed: the vault is
asked for each span's placeholder again, and only if every answer is the one recorded
is the output reused (`_replay` says why that is the scan's answer). Neither holds a
value. `remember_clean=False` turns both off.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import NamedTuple

from .errors import RedactionError, UnknownEntityError
from .numbers import digit_mask, know_clusters, mask_clusters
from .recognizers import ANCHOR, BUILTIN, IPV6, Recognizer
from .text import View, ascii_bytes, normalise, strip_invisible
from .vault import PLACEHOLDER, Vault

__all__ = ["ENTITIES", "ENTITIES_ORDER", "Redacted", "Redactor"]

# Priority when two spans of equal length overlap: the more specific format first.
ENTITIES_ORDER = ("EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "UK_NINO", "IP_ADDRESS", "PHONE")
ENTITIES: frozenset[str] = frozenset(ENTITIES_ORDER)

_MAX_ROUNDS = 8

# A confirming scan reads whole stretches of text between cuts: after a newline, and
# after ". " followed by an ASCII letter (a sentence break no built-in pattern, digit
# run or keyword window crosses). The one reader that crosses a newline is the IPv4
# version check, 20 characters back: after a newline cut a scan starts `_LOOKBACK`
# characters early, and the stretch after a newline less than `_REACH` characters past
# a placeholder is read too. Elsewhere two characters early (the look-behinds) suffice.
_LOOKBACK = 24
_REACH = 21
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: Mapping[str, int] = field(default_factory=dict)  # entities replaced in this text


class _Found(NamedTuple):  # a tuple: cheaper to make than a frozen dataclass
    start: int
    end: int
    entity: str
    rank: int


#: the clean-text memo of a Redactor: at most this many texts of at most this many chars
_CLEAN_ENTRIES = 1024
_CLEAN_TEXT_MAX = 8192
#: the replay memo (texts that had findings): at most this many, of the same size bound
_SEEN_ENTRIES = 1024


class _Seen(NamedTuple):
    """How one text was redacted in one round, without any of its values: the spans
    (offsets into the text, which is its own view) with the placeholder each got, and the
    output. Replaying asks the vault for each span's placeholder in the same order."""

    spans: tuple[tuple[str, int, int, str], ...]  # (entity, start, end, placeholder)
    text: str  # the output: placeholders and the text between the spans
    counts: tuple[tuple[str, int], ...]


class Redactor:
    """The compiled detector set of one use case."""

    def __init__(
        self,
        entities: Iterable[str],
        *,
        extra: Sequence[Recognizer] = (),
        remember_clean: bool = True,
    ) -> None:
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
        self._local = not extra  # the built-in recognizers' reach is known: see `_windows`
        #: texts in which nothing was found -> their output. A conversation is resent
        #: whole on every turn and system prompts repeat: most of what a call carries
        #: has been scanned before. Only detector-free texts are kept, so the answer
        #: never depends on a vault; bounded in count and in the size of a text.
        self._clean: dict[str, str] = {}
        #: texts that had findings, keyed by a keyed digest (the memo holds no text and no
        #: value: values are read from the text a hit arrives with). A case's history is
        #: resent on every turn with the case's vault, which already holds its values, so
        #: replaying the vault lookups gives the same placeholders (see `_replay`).
        self._seen: dict[bytes, _Seen] = {}
        self._seen_key = os.urandom(16)
        self._remember = remember_clean

    def redact(self, text: str, vault: Vault) -> Redacted:
        """Replace every detected value by its placeholder in `vault`."""
        counts: dict[str, int] = {}
        clean = self._clean.get(text)
        if clean is not None:
            return Redacted(clean, counts)
        digest = None
        remember = self._remember and len(text) <= _CLEAN_TEXT_MAX
        try:
            if remember:
                digest = hashlib.blake2b(
                    text.encode("utf-8", "surrogatepass"), digest_size=16, key=self._seen_key
                ).digest()
                seen = self._seen.get(digest)
                if seen is not None:
                    replayed = _replay(seen, text, vault)
                    if replayed is not None:
                        return replayed
            view = normalise(text)
            found = self._detect(view)
            if not found:  # an unchanged view means there was nothing invisible to strip
                out = text if view.is_identity else strip_invisible(text)
                if remember:
                    if len(self._clean) >= _CLEAN_ENTRIES:
                        self._clean.pop(next(iter(self._clean)))
                    self._clean[text] = out
                return Redacted(out, counts)
            first = found if view.is_identity and digest is not None else None
            # Each round replaces at least one character that is not a placeholder, so
            # rounds near placeholders end by themselves; a chain such as "x+1000000+1000000
            # ..." (each number a phone only once its neighbour is a placeholder) takes one
            # round per link. Whole-text rounds, with extra recognizers, are bounded.
            rounds = len(text) + 1 if self._local else _MAX_ROUNDS - 1
            for _ in range(rounds):
                current, placed = self._replace(view, found, vault, counts)
                if view.is_identity:  # placeholders are ASCII: the text is still its view
                    view = View(current, current)
                else:
                    view = normalise(current)
                    placed = [m.span() for m in PLACEHOLDER.finditer(view.text)]
                found = self._detect_near(view, placed) if self._local else self._detect(view)
                if not found:  # `_replace` already dropped the invisible characters
                    if first is not None and digest is not None:
                        self._memorise(digest, first, placed, current, counts)
                    return Redacted(current, counts)
                first = None  # only one-round redactions are replayed
        except RedactionError:
            raise
        except Exception as exc:  # any detector bug fails the call closed
            raise RedactionError(f"a detector failed: {type(exc).__name__}") from exc
        raise RedactionError("redaction did not reach a fixed point")

    def _memorise(
        self,
        digest: bytes,
        found: list[_Found],
        placed: list[tuple[int, int]],
        out: str,
        counts: dict[str, int],
    ) -> None:
        """Keep how a text whose view is itself was redacted in one round."""
        if len(self._seen) >= _SEEN_ENTRIES:
            self._seen.pop(next(iter(self._seen)))
        spans = tuple(
            (f.entity, f.start, f.end, out[a:b]) for f, (a, b) in zip(found, placed, strict=True)
        )
        self._seen[digest] = _Seen(spans, out, tuple(counts.items()))

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
        # (the text's ASCII bytes are read by the recognizers too: `ascii_bytes` keeps them)
        protected = (
            [m.span() for m in PLACEHOLDER.finditer(text)] if b"<" in ascii_bytes(text) else []
        )
        found: list[_Found] = []
        hidden = protected
        for rec, rank in self._anywhere:
            size = len(found)
            _collect(found, rec, text, rank)
            if rec is IPV6 and len(found) > size:
                hidden = [*protected, *_ipv6_interiors(text, found[size:])]
        if self._digit_based:
            # One digit mask and its clusters for all of them (`know_clusters`); each
            # recognizer reads the text only at the clusters. A recognizer whose
            # `min_digits` the text (outside placeholders) does not hold is not run.
            mask = digit_mask(text, self._fewest_digits, hidden)
            clusters = () if mask is None else tuple(mask_clusters(mask))
            digits = sum([count for _, _, count in clusters])
            if digits >= self._fewest_digits:
                know_clusters(text, clusters)
                for rec, rank, min_digits in self._digit_based:
                    if digits >= min_digits:
                        _collect(found, rec, text, rank)
                if hidden:  # a recognizer called on `text` itself must see every digit
                    know_clusters("", ())
        if not found:
            return found
        if protected:
            found = [f for f in found if not any(f.start < e and s < f.end for s, e in protected)]
        return _resolve(found)

    def _detect_near(self, view: View, placed: list[tuple[int, int]]) -> list[_Found]:
        """What `_detect` finds in `view`, given that only the stretches around the
        `placed` placeholders (view offsets; more of them do no harm) can hold anything
        new."""
        text = view.text
        found: list[_Found] = []
        for start, end in _windows(text, placed):
            begin = start - (_LOOKBACK if text[start - 1 : start] == "\n" else 2)
            begin = begin if begin > 0 else 0  # (a compare: cheaper than `max`)
            part = text[begin:end]
            if not self._may_hold(part):
                continue
            found.extend(
                _Found(f.start + begin, f.end + begin, f.entity, f.rank)
                for f in self._detect(View(part, part))
                if f.start + begin >= start  # a lookback-only span is no concern of ours
            )
        return found

    def _may_hold(self, part: str) -> bool:
        """False when `_detect` certainly finds nothing in `part` (built-ins only).

        Most stretches a confirming scan reads hold nothing but prose and placeholders,
        and `_detect` costs more in fixed steps than such a stretch is long. A span that
        overlaps a placeholder is dropped, so what is left to find lies in the text
        between them and holds an `ANCHOR` there (a digit, "@", ":" or a spelled form).
        """
        bare = PLACEHOLDER.sub("\0", part) if "<" in part else part
        return ANCHOR.search(bare) is not None

    @staticmethod
    def _replace(
        view: View, found: list[_Found], vault: Vault, counts: dict[str, int]
    ) -> tuple[str, list[tuple[int, int]]]:
        """The text with `found` replaced, and where the placeholders now stand in it."""
        original = view.original
        identity = view.is_identity  # the same offsets, and nothing invisible to strip
        out: list[str] = []
        placed: list[tuple[int, int]] = []
        size = 0
        last = 0
        for f in found:
            if identity:  # resolved spans do not overlap
                start, end = f.start, f.end
                before, value = original[last:start], original[start:end]
            else:
                start, end = view.span(f.start, f.end)
                if start < last:  # "¼" is "1", U+2044, "4" in the view: two spans may
                    start = last  # share it; it stays with the first (restored once)
                    if start >= end:
                        continue
                before = strip_invisible(original[last:start])
                value = strip_invisible(original[start:end])
            ph = vault.placeholder(f.entity, value)
            size += len(before)
            placed.append((size, size + len(ph)))
            size += len(ph)
            out += (before, ph)
            counts[f.entity] = counts.get(f.entity, 0) + 1
            last = end
        out.append(original[last:] if identity else strip_invisible(original[last:]))
        return "".join(out), placed


def _replay(seen: _Seen, text: str, vault: Vault) -> Redacted | None:
    """`seen`'s output, if `vault` gives every span the placeholder it got then; else
    None, and `redact` scans the text as usual.

    Why that is the scan's answer: a scan's first round finds its spans in the text
    alone and asks the vault for their placeholders in order, and one whose
    placeholders are those of `seen` writes `seen`'s output, which its confirming scan
    found complete. The lookups made here are the scan's first ones, so a vault left
    changed by a replay that stopped short holds just what the scan would have added:
    the scan that follows asks it again and gets the same answers.
    """
    for entity, start, end, ph in seen.spans:
        if vault.placeholder(entity, text[start:end]) != ph:
            return None
    return Redacted(seen.text, dict(seen.counts))


def _collect(found: list[_Found], rec: Recognizer, text: str, rank: int) -> None:
    """Append what `rec` finds in `text` to `found`."""
    size = len(text)
    entity = rec.entity
    for start, end in rec.find(text):
        if not 0 <= start < end <= size:
            raise RedactionError(f"recognizer for {entity} returned an invalid span")
        found.append(_Found(start, end, entity, rank))


def _ipv6_interiors(text: str, found: list[_Found]) -> list[tuple[int, int]]:
    """The stretches strictly between the first and the last colon of IPv6 addresses.

    They hold hextets of at most four characters between colons, and no number-based
    span holds a colon, so none holds a digit of them: the digit mask leaves them out,
    and the long digit clusters of an address are not searched.
    """
    interiors = []
    for f in found:
        first = text.find(":", f.start, f.end)
        last = text.rfind(":", f.start, f.end)
        if last > first + 1:
            interiors.append((first + 1, last))
    return interiors


def _windows(text: str, placed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The stretches of `text` (ascending, disjoint) a confirming scan has to read.

    Why this is enough: no built-in recognizer reads across a cut (see `_LOOKBACK`)
    except the IPv4 version check's 20 characters back, and a span is found or not from
    what it reads. Between cuts the text is what the previous scan read, which found
    nothing there that was not replaced (a span that lost an overlap shares its stretch
    with the winner's placeholder), so it finds nothing there now.
    """
    windows: list[tuple[int, int]] = []
    # (offsets are clamped with compares: a `max` or `min` call costs about ten of them)
    size = len(text)
    for start, end in placed:
        stop = _cut_after(text, end)
        if stop < end + _REACH and text[stop - 1] == "\n":
            stop = _cut_after(text, end + _REACH if end + _REACH < size else size)
        if windows and start - 2 <= windows[-1][1]:  # its cut before is in the last window
            first, last = windows[-1]
            windows[-1] = (first, stop if stop > last else last)
            continue
        begin = _cut_before(text, start - 2 if start > 2 else 0)
        if windows and begin <= windows[-1][1]:
            first, last = windows[-1]
            windows[-1] = (first, stop if stop > last else last)
        else:
            windows.append((begin, stop))
    return windows


def _cut_before(text: str, pos: int) -> int:
    """The last cut at or before `pos` (0 if there is none).

    The sentence break is looked for first and the newline only after it: a line is
    often long, and a backward search for a newline would read all of it."""
    size = len(text)
    dot = text.rfind(". ", 0, pos)
    while dot != -1 and not (dot + 2 < size and text[dot + 2] in _LETTERS):
        dot = text.rfind(". ", 0, dot + 1)
    cut = 0 if dot == -1 else dot + 2
    return text.rfind("\n", cut, pos) + 1 or cut


def _cut_after(text: str, pos: int) -> int:
    """The first cut at or after `pos` (the end of the text if there is none).

    As in `_cut_before`, the newline is looked for only up to the sentence break."""
    size = len(text)
    dot = text.find(". ", pos - 2 if pos > 2 else 0)
    while dot != -1 and not (dot + 2 < size and text[dot + 2] in _LETTERS):
        dot = text.find(". ", dot + 1)
    cut = size if dot == -1 else dot + 2
    return text.find("\n", pos - 1 if pos > 1 else 0, cut) + 1 or cut


def _resolve(found: list[_Found]) -> list[_Found]:
    """Keep non-overlapping spans, longest first (then by entity priority), in text order."""
    if len(found) > 1:
        found.sort()  # by start: most texts have no overlap at all, and all are kept
        if all(a.end <= b.start for a, b in pairwise(found)):
            return found
    kept: list[_Found] = []
    for f in sorted(found, key=lambda f: (f.start - f.end, f.rank, f.start)):
        if all(f.end <= k.start or k.end <= f.start for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept
