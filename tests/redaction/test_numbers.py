"""Digit clusters and runs: the shared candidate shapes of the number-based recognizers."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from redaction.numbers import Run, mask_clusters, pick_windows

# The cluster pattern as first written: a digit, then digits at most 12 characters apart
# (never across a newline; the mask's other bytes are b" ", b"]" and the letters of "dot").
_CLUSTER_REFERENCE = re.compile(rb"0(?:[^0\n]{0,12}0)*")


# The mask's bytes: digits, newlines, the gap bytes, and gaps of 12 and 13 characters.
_MASK_PIECES = [b"0", b"\n", b" ", b"d", b"o", b"t", b"]", b" " * 12, b" " * 13, b"dot]" * 3]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_MASK_PIECES), max_size=60))
def test_mask_clusters_match_the_reference_pattern(pieces: list[bytes]) -> None:
    mask = b"".join(pieces)
    expected = [
        (m.start(), m.end(), m.group().count(b"0")) for m in _CLUSTER_REFERENCE.finditer(mask)
    ]
    assert mask_clusters(mask) == expected


def _run(values: tuple[str, ...]) -> Run:
    groups, totals, pos = [], [0], 0
    for value in values:
        groups.append((pos, pos + len(value)))
        totals.append(totals[-1] + len(value))
        pos += len(value) + 1
    text = " ".join(values)
    return Run(text, 0, tuple(groups), (" ",) * (len(values) - 1), "", frozenset(), values,
               tuple(totals))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=7),
    st.sets(st.integers(0, 6)),
    st.sets(st.tuples(st.integers(0, 6), st.integers(0, 6))),
)
def test_wide_starts_judge_what_a_wide_range_for_all_would_accept(
    lengths: list[int], starts: set[int], accepted: set[tuple[int, int]]
) -> None:
    """A judge that rejects every window outside 9-11 digits unless it starts at one of
    `starts` picks the same spans whether all windows get 7-17 or only those starts do."""
    run = _run(tuple("1" * n for n in lengths))

    def judge(run: Run, i: int, j: int, digits: int) -> tuple[int, int] | None:
        if (i, j) not in accepted or (i not in starts and not 9 <= digits <= 11):
            return None
        return run.groups[i][0], run.groups[j][1]

    wide = list(pick_windows(run, judge, 7, 17))
    narrow = list(pick_windows(run, judge, 9, 11, (starts, 7, 17)))
    assert narrow == wide
