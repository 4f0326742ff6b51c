"""strip_invisible and the normalised view with its offset map."""

from __future__ import annotations

import pytest

from redaction import strip_invisible
from redaction.text import is_invisible, normalise, normalise_value

INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c",
    "\u200d",
    "\u2060",  # word joiner
    "\ufeff",  # BOM
    "\u00ad",  # soft hyphen
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\U000e0001",  # tag block
    "\U000e0041",
    "\U000e007f",
    "\U000e0002",  # unassigned inside the tag block
    "\ufe0f",  # variation selector 16
    "\U000e0100",  # variation selector 17
    "\u180b",
    "\u034f",  # combining grapheme joiner
    "\u3164",  # Hangul filler
]


@pytest.mark.parametrize("ch", INVISIBLE)
def test_invisible_characters_are_stripped(ch: str) -> None:
    assert is_invisible(ch)
    assert strip_invisible(f"a{ch}b{ch}") == "ab"


@pytest.mark.parametrize("ch", ["a", "\n", "\t", "é", "\u00a0", "中", "\U0001f600", "\x00"])
def test_visible_characters_are_kept(ch: str) -> None:
    assert not is_invisible(ch)
    assert strip_invisible(f"x{ch}y") == f"x{ch}y"


def test_ascii_text_is_its_own_view() -> None:
    view = normalise("plain text 123")
    assert view.is_identity and view.text == "plain text 123"
    assert view.span(6, 10) == (6, 10)


def test_view_normalises_and_maps_offsets_back() -> None:
    original = (
        "ab\u200b\uff14\uff11\u2013\ufb01x\u0663"  # ZWSP, fullwidth 41, en dash, ligature, Arabic 3
    )
    view = normalise(original)
    assert view.text == "ab41-fix3"
    assert not view.is_identity
    assert view.span(0, 2) == (0, 2)
    assert view.span(2, 5) == (3, 6)  # "41-" skips the zero-width space
    assert view.span(1, 3) == (1, 4)  # a span starting before the stripped char covers it
    assert view.span(5, 6) == (6, 7)  # "f" is the first half of the ligature
    assert view.span(6, 7) == (6, 7)  # "i" maps to the same original character
    assert view.span(7, 9) == (7, 9)


def test_view_of_unchanged_non_ascii_text_is_identity() -> None:
    view = normalise("café")
    assert view.is_identity and view.span(0, 4) == (0, 4)


def test_view_of_only_invisible_characters_is_empty() -> None:
    view = normalise("\u200b\u200b")
    assert view.text == ""


def test_normalise_value() -> None:
    assert normalise_value("\uff21\uff22 \uff11\uff12") == "AB 12"


def test_non_ascii_text_is_searched_chunk_by_chunk() -> None:
    # A run of non-ASCII characters across the 256-character chunk edge, and chunks of
    # plain ASCII around it: both halves are normalised and mapped back.
    text = "a" * 250 + "\uff14" * 12 + "\u200b" + "b" * 300 + "\u00e9"
    view = normalise(text)
    assert view.text == "a" * 250 + "4" * 12 + "b" * 300 + "\u00e9"
    assert view.span(250, 262) == (250, 262)
    assert strip_invisible(text) == "a" * 250 + "\uff14" * 12 + "b" * 300 + "\u00e9"


def test_visible_non_ascii_text_is_returned_as_is() -> None:
    text = "price \u20ac5 " * 100
    assert strip_invisible(text) is text
    assert normalise(text).is_identity


def test_only_chunks_with_non_ascii_characters_are_searched() -> None:
    text = "a" * 1100 + "\u200b" + "b" * 10
    assert strip_invisible(text) == "a" * 1100 + "b" * 10
    assert normalise(text).span(1100, 1101) == (1101, 1102)
