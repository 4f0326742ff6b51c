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
on a digit mask of the text (b"0" for a digit, b"\\n" for a newline, b" " for the rest):
one `bytes.translate`, then a pattern starting with a literal, which the regular
expression engine skips to quickly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .text import ascii_bytes

__all__ = [
    "CLUSTER",
    "Run",
    "digit_clusters",
    "digit_mask",
    "digit_runs",
    "know_clusters",
    "pick_windows",
]

_DIGIT_MASK = bytes(48 if 48 <= b <= 57 else 10 if b == 10 else 32 for b in range(256))
_NON_DIGIT_BYTES = bytes(b for b in range(256) if not 48 <= b <= 57)
CLUSTER = re.compile(rb"0(?: {0,12}0)*")


def digit_mask(text: str, fewest: int = 0) -> bytes | None:
    """One byte per character of `text` (see above); None if it has fewer than `fewest`
    ASCII digits."""
    encoded = ascii_bytes(text)
    if fewest and len(encoded.translate(None, _NON_DIGIT_BYTES)) < fewest:
        return None  # the common case, prose without numbers, in a few C calls
    return encoded.translate(_DIGIT_MASK)


# The number-based recognizers of one redactor scan the same region one after another:
# the last region's clusters and runs are kept (one tuple swap, safe between threads).
_last_clusters: tuple[str, tuple[tuple[int, int, int], ...]] = ("", ())


Cluster = tuple[int, int, int]  # start, end, digits


def know_clusters(text: str, clusters: tuple[Cluster, ...]) -> None:
    """Hand `digit_clusters` the clusters of `text`, found while scanning a text around it."""
    global _last_clusters
    _last_clusters = (text, clusters)


def digit_clusters(text: str) -> tuple[Cluster, ...]:
    """(start, end, digit count) of each cluster: its first digit to just after its last."""
    global _last_clusters
    cached_text, cached = _last_clusters
    if cached_text is text:
        return cached
    mask = digit_mask(text)
    assert mask is not None  # no minimum asked
    clusters = tuple((*m.span(), mask.count(b"0", *m.span())) for m in CLUSTER.finditer(mask))
    _last_clusters = (text, clusters)
    return clusters


_RUN = re.compile(
    # Seven characters a run can hold, first: a shorter run is skipped (see
    # MIN_RUN_DIGITS) and costs no match object; a shorter run's tail is shorter still.
    r"(?=[0-9 .\-/()+]{7})"
    r"(?<![A-Za-z0-9_@+])(?<![A-Za-z0-9][\-/.])"  # not the tail of an identifier
    r"(?:\+|\(\+?)?[0-9]+(?:[ .\-/()]{1,3}[0-9]+)*"
)
_GROUP = re.compile(r"[0-9]+")
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

    def digits(self, i: int, j: int) -> str:
        return "".join(self.values[i : j + 1])

    def lengths(self, i: int, j: int) -> list[int]:
        return [len(v) for v in self.values[i : j + 1]]


def _is_date(values: list[str], seps: list[str]) -> bool:
    a, b, c = values
    if seps[0] != seps[1] or seps[0] not in _DATE_SEPS:
        return False
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
    # A run starts at most two characters ("(+") before its first digit.
    for start, end, digits in digit_clusters(text):
        if digits >= MIN_RUN_DIGITS:  # no window of a smaller cluster is long enough
            yield from _cluster_runs(text, max(0, start - 2), end)


def _cluster_runs(text: str, start: int, end: int) -> Iterator[Run]:
    for m in _RUN.finditer(text, start, end):
        run_text = m.group()
        if len(run_text) < MIN_RUN_DIGITS:
            continue
        base = m.start()
        groups = tuple((g.start() + base, g.end() + base) for g in _GROUP.finditer(run_text))
        values = tuple(text[s:e] for s, e in groups)
        prefix = text[base : groups[0][0]]
        if len(groups) == 1:
            yield Run(text, base, groups, (), prefix, frozenset(), values)
            continue
        seps = tuple(text[groups[k][1] : groups[k + 1][0]] for k in range(len(groups) - 1))
        blocked: set[int] = set()
        for k in range(len(groups) - 2):
            if _is_date(list(values[k : k + 3]), list(seps[k : k + 2])):
                blocked.update((k, k + 1, k + 2))
        yield Run(text, base, groups, seps, prefix, frozenset(blocked), values)


# judge(run, i, j, digits): the span of groups i..j (holding `digits` digits), or None.
Judge = Callable[[Run, int, int, int], "tuple[int, int] | None"]


def pick_windows(
    run: Run, judge: Judge, min_digits: int, max_digits: int
) -> Iterator[tuple[int, int]]:
    """Yield the spans `judge` accepts, longest window first from each leftmost start.

    Only windows holding `min_digits` to `max_digits` digits are judged.
    """
    values = run.values
    blocked = run.blocked
    count = len(values)
    i = 0
    while i < count:
        if i in blocked:
            i += 1
            continue
        ends: list[tuple[int, int]] = []
        total = 0
        for j in range(i, count):
            if j in blocked:
                break
            total += len(values[j])
            if total > max_digits:
                break
            if total >= min_digits:
                ends.append((j, total))
        for j, digits in reversed(ends):
            span = judge(run, i, j, digits)
            if span is not None:
                yield span
                i = j + 1
                break
        else:
            i += 1
