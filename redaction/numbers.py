"""Digit clusters and runs: the shared candidate shapes of the number-based recognizers.

    digit_clusters("card 4111 1111 1111 1111, and much later on: ref 77")
    # ((5, 24, 16), (49, 51, 2)): start, end and digit count

    for run in digit_runs("call +44 (0)20 7946 0958 or 4111 1111 1111 1111"):
        run.groups   # digit groups as (start, end) offsets in the text
        run.seps     # the separator text before each group after the first

A run is a sequence of digit groups joined by short separators (space, dot, dash,
slash, parentheses), so "separators inside numbers" cannot hide a value. Recognizers
pick windows of consecutive groups with `pick_windows` and validate each window:
the longest valid window from the leftmost start wins, so a card next to a quantity
("2 4111 1111 1111 1111") is still found. Groups that form a date are never part of a
window.

Clusters are digits no more than 12 characters apart (never across a newline). Every
number-based pattern keeps its digits within one cluster, so the recognizers run their
patterns only at the clusters instead of at every offset of the text. Clusters are found
on a digit mask of the text (b"0" for a digit, b"\\n" for a newline, b"d", b"o" and b"t"
for those letters in either case, b"]" for a closing bracket of any kind, b" " for the
rest): one `bytes.translate`, then `bytes.find` for each cluster's first digit and a
pattern matched from there. The letters and brackets are for the e-mail recognizer,
which looks for a spelled "dot" and "at]" in the same mask (`text_mask`): one pass over
the text serves both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass

from .text import ascii_bytes

__all__ = [
    "CLUSTER",
    "Run",
    "digit_clusters",
    "digit_mask",
    "digit_runs",
    "know_clusters",
    "mask_clusters",
    "pick_windows",
    "text_mask",
]

_DIGIT_MASK = bytes(
    48 if 48 <= b <= 57
    else 10 if b == 10
    else b | 32 if b in b"dotDOT"
    else 93 if b in b"])}>"
    else 32
    for b in range(256)
)  # fmt: skip
_NON_DIGIT_BYTES = bytes(b for b in range(256) if not 48 <= b <= 57)
_COUNT_FIRST = 16384  # characters: see `digit_mask`
# Possessive (`++`, `*+`): no backtracking state is kept per digit, which makes a match
# less than half as costly; it is only ever tried at a digit, see `mask_clusters` (a
# search with it would try every offset: it has no literal prefix for the engine to skip to).
# Between digits: anything but a newline (b" ", a letter of "dot" or b"]").
CLUSTER = re.compile(rb"0++(?:[^0\n]{1,12}+0++)*+")

# The last text's mask (one tuple swap, safe to share between threads): the e-mail
# recognizer reads it before the redactor's digit scan does.
_last_mask: tuple[str, bytes] = ("", b"")


def text_mask(text: str) -> bytes:
    """The mask of `text` (see above), placeholders included."""
    global _last_mask
    cached_text, cached = _last_mask
    if cached_text is text:
        return cached
    mask = ascii_bytes(text).translate(_DIGIT_MASK)
    _last_mask = (text, mask)
    return mask


def digit_mask(text: str, fewest: int = 0, hidden: Iterable[tuple[int, int]] = ()) -> bytes | None:
    """The mask of `text` (see above); None if it has fewer than `fewest` ASCII digits.
    The `hidden` spans (placeholders) count as text without digits (b" " in the mask).

    With `fewest`, the digits of a long text are counted first (a deleting translation
    writes nearly nothing for prose without numbers, where a mask would write every
    byte); a short text's mask is made at once, and is None only if it has no digit."""
    if fewest and len(text) > _COUNT_FIRST and _last_mask[0] is not text:
        if len(ascii_bytes(text).translate(None, _NON_DIGIT_BYTES)) < fewest:
            return None  # the common case, prose without numbers, in a few C calls
    mask = text_mask(text)
    if hidden:
        blanked = bytearray(mask)
        for start, end in hidden:
            blanked[start:end] = b" " * (end - start)
        mask = bytes(blanked)
    if fewest and b"0" not in mask:
        return None
    return mask


def mask_clusters(mask: bytes) -> list[tuple[int, int, int]]:
    """(start, end, digit count) of each cluster of a digit mask.

    Each cluster's first digit is found with `bytes.find` (memchr: prose is skipped at
    memory speed, where a regular expression search steps through it byte by byte)
    and the cluster is matched from there."""
    clusters = []
    find, count, match = mask.find, mask.count, CLUSTER.match
    start = find(b"0")
    while start != -1:
        end = match(mask, start).end()  # type: ignore[union-attr]  # a digit: it matches
        clusters.append((start, end, count(b"0", start, end)))
        start = find(b"0", end)
    return clusters


# The number-based recognizers of one redactor scan the same text one after another:
# the last text's clusters and runs are kept (one tuple swap, safe between threads).
_last_clusters: tuple[str, tuple[tuple[int, int, int], ...]] = ("", ())


Cluster = tuple[int, int, int]  # start, end, digits


def know_clusters(text: str, clusters: tuple[Cluster, ...]) -> None:
    """Hand `digit_clusters` the clusters of `text` (the redactor's: its mask leaves out
    placeholders), and forget runs found from other clusters of the same text."""
    global _last_clusters, _last
    _last = ("", ())
    _last_clusters = (text, clusters)


def digit_clusters(text: str) -> tuple[Cluster, ...]:
    """(start, end, digit count) of each cluster: its first digit to just after its last."""
    global _last_clusters
    cached_text, cached = _last_clusters
    if cached_text is text:
        return cached
    mask = digit_mask(text)
    assert mask is not None  # no minimum asked
    clusters = tuple(mask_clusters(mask))
    _last_clusters = (text, clusters)
    return clusters


_RUN = re.compile(
    # Seven characters a run can hold, first: a shorter run is skipped (see
    # MIN_RUN_DIGITS) and costs no match object; a shorter run's tail is shorter still.
    r"(?=[0-9 .\-/()+]{7})"
    r"(?<![A-Za-z0-9_@+])(?<![A-Za-z0-9][\-/.])"  # not the tail of an identifier
    r"(?:\+|\(\+?)?[0-9]+(?:[ .\-/()]{1,3}[0-9]+)*"
)
_GROUP_SPLIT = re.compile(r"([0-9]+)")
_DATE_SEPS = frozenset("/.-")


@dataclass(frozen=True, slots=True)
class Run:
    text: str
    start: int  # offset of the run (its "+" or "(" prefix included)
    groups: tuple[tuple[int, int], ...]
    seps: tuple[str, ...]  # seps[k] joins groups[k] and groups[k + 1]
    prefix: str  # "", "+", "(" or "(+"
    blocked: frozenset[int]  # groups that belong to a date
    values: tuple[str, ...] = ()  # the groups' digits, read once for every recognizer
    totals: tuple[int, ...] = (0,)  # totals[k]: the digits of the groups before group k

    def digits(self, i: int, j: int) -> str:
        return "".join(self.values[i : j + 1])

    def lengths(self, i: int, j: int) -> list[int]:
        return [len(v) for v in self.values[i : j + 1]]


def _is_date(values: tuple[str, ...], sep: str) -> bool:
    """Three groups joined twice by `sep` (one of "/.-"), read as a date."""
    a, b, c = values
    la, lb, lc = len(a), len(b), len(c)
    if la == 4 and lb <= 2 and lc <= 2:  # 2026-01-15
        return 1 <= int(b) <= 12 and 1 <= int(c) <= 31
    if la <= 2 and lb <= 2 and lc in (2, 4):  # 15/01/2026, 01.15.26
        return 1 <= int(a) <= 31 and 1 <= int(b) <= 31 and (int(a) <= 12 or int(b) <= 12)
    return False


_last: tuple[str, tuple[Run, ...]] = ("", ())


def digit_runs(text: str) -> tuple[Run, ...]:
    global _last
    cached_text, cached = _last
    if cached_text is text:
        return cached
    runs = tuple(_parse_runs(text))
    _last = (text, runs)
    return runs


# No run-based recognizer takes fewer digits than a phone number: shorter runs, and the
# runs of clusters with fewer digits, are not returned.
MIN_RUN_DIGITS = 7


def _parse_runs(text: str) -> Iterator[Run]:
    # A run starts at most two characters ("(+") before its first digit (a regular
    # expression reads a negative start as 0: no `max`, a builtin call costs ten compares)
    for start, end, digits in digit_clusters(text):
        if digits >= MIN_RUN_DIGITS:  # no window of a smaller cluster is long enough
            yield from _cluster_runs(text, start - 2, end)


def _cluster_runs(text: str, start: int, end: int) -> Iterator[Run]:
    for m in _RUN.finditer(text, start, end):
        run_text = m.group()
        if len(run_text) < MIN_RUN_DIGITS:
            continue
        # [prefix, group, sep, group, ..., group, ""]: a run ends with a digit
        parts = _GROUP_SPLIT.split(run_text)
        prefix = parts[0]
        values = tuple(parts[1::2])
        seps = tuple(parts[2:-1:2])
        groups: list[tuple[int, int]] = []
        totals = [0]
        pos = m.start() + len(prefix)
        for value, sep in zip(values, (*seps, ""), strict=True):
            size = len(value)
            groups.append((pos, pos + size))
            totals.append(totals[-1] + size)
            pos += size + len(sep)
        blocked: set[int] = set()
        for k in range(len(seps) - 1):
            sep = seps[k]
            if sep == seps[k + 1] and sep in _DATE_SEPS and _is_date(values[k : k + 3], sep):
                blocked.update((k, k + 1, k + 2))
        yield Run(
            text, m.start(), tuple(groups), seps, prefix, frozenset(blocked), values, tuple(totals)
        )


# judge(run, i, j, digits): the span of groups i..j (holding `digits` digits), or None.
Judge = Callable[[Run, int, int, int], "tuple[int, int] | None"]


def pick_windows(
    run: Run,
    judge: Judge,
    min_digits: int,
    max_digits: int,
    wide: tuple[Container[int], int, int] | None = None,
) -> Iterator[tuple[int, int]]:
    """Yield the spans `judge` accepts, longest window first from each leftmost start.

    Only windows holding `min_digits` to `max_digits` digits are judged (a recognizer
    narrows the range to what its judge can accept: judging is the costly step). With
    `wide` = (starts, min, max), windows from the groups in `starts` take that range
    instead (a phone number from a "+" or "00" may be longer than one without).
    """
    blocked = run.blocked
    totals = run.totals
    count = len(run.values)
    i = 0
    while i < count:
        if i in blocked:
            i += 1
            continue
        low, high = min_digits, max_digits
        if wide is not None and i in wide[0]:
            _, low, high = wide
        base = totals[i]
        last = i  # the longest window from i: up to a date or to `high` digits
        while last + 1 < count and last + 1 not in blocked:
            if totals[last + 2] - base > high:
                break
            last += 1
        step = 1
        for j in range(last, i - 1, -1):
            digits = totals[j + 1] - base
            if digits < low:
                break
            if digits <= high:
                span = judge(run, i, j, digits)
                if span is not None:
                    yield span
                    step = j + 1 - i
                    break
        i += step
