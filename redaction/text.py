r"""Invisible-character stripping and the one normalised view detection runs on.

    view = normalise("\uff14\uff11\uff11\uff11\u200b-1111")  # fullwidth "4111"
    view.text            # "4111-1111": NFKC, decimal digits to ASCII, dashes to "-"
    view.span(0, 4)      # (0, 5): the original span, including the stripped zero-width space

Detection runs on `view.text`; replacement happens on the original text through
`view.span`, so what the customer wrote is kept everywhere except the replaced values.
ASCII text is its own view (the common case costs one `str.isascii` call).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "View",
    "ascii_bytes",
    "is_invisible",
    "normalise",
    "normalise_value",
    "strip_invisible",
]

# Invisible code points that are not in category Cf: variation selectors, the whole tag
# block (some of it unassigned, category Cn), Mongolian free variation selectors, the
# combining grapheme joiner and the Hangul fillers used to smuggle blank text.
_INVISIBLE_RANGES = (
    (0xFE00, 0xFE0F),
    (0xE0000, 0xE007F),
    (0xE0100, 0xE01EF),
    (0x180B, 0x180F),
)
_INVISIBLE_POINTS = frozenset({0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0})
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_ENCODE_CHUNK = 1024


def _non_ascii_runs(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the non-ASCII runs of `text`.

    Read from its ASCII bytes (which detection reads too: `ascii_bytes` keeps them), where
    each such character is a b"?": `bytes.find` runs at memory speed, and the regular
    expression only confirms each "?" found (a real "?" is no run)."""
    raw = ascii_bytes(text)
    find = raw.find
    match = _NON_ASCII.match
    pos = find(b"?")
    while pos != -1:
        m = match(text, pos)
        if m is None:
            pos = find(b"?", pos + 1)
        else:
            end = m.end()
            yield pos, end
            pos = find(b"?", end)


@lru_cache(maxsize=8192)
def is_invisible(ch: str) -> bool:
    """True for zero-width, bidi-control, tag, variation-selector and other Cf chars."""
    cp = ord(ch)
    if cp < 0x80:
        return False
    if cp in _INVISIBLE_POINTS or unicodedata.category(ch) == "Cf":
        return True
    return any(lo <= cp <= hi for lo, hi in _INVISIBLE_RANGES)


# Several recognizers read the same text's bytes one after another: the last text's
# are kept (one tuple swap, safe to share between threads).
_last_bytes: tuple[str, bytes] = ("", b"")


def ascii_bytes(text: str) -> bytes:
    """`text` as ASCII bytes, b"?" for each other character (so offsets are kept)."""
    global _last_bytes
    cached_text, cached = _last_bytes
    if cached_text is text:
        return cached
    if text.isascii():
        encoded = text.encode()
    else:  # per chunk, so that only chunks with non-ASCII take the encoder's slow path
        encoded = b"".join(
            text[i : i + _ENCODE_CHUNK].encode("ascii", "replace")
            for i in range(0, len(text), _ENCODE_CHUNK)
        )
    _last_bytes = (text, encoded)
    return encoded


def strip_invisible(text: str) -> str:
    """Remove invisible characters; every visible character (and \\n, \\t) is kept."""
    if text.isascii():
        return text
    parts: list[str] = []
    last = 0
    for start, end in _non_ascii_runs(text):
        for i in range(start, end):
            if is_invisible(text[i]):
                parts.append(text[last:i])
                last = i + 1
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


@lru_cache(maxsize=8192)
def _normalise_char(ch: str) -> str:
    if is_invisible(ch):
        return ""
    category = unicodedata.category(ch)
    if category == "Nd":  # any script's decimal digit, fullwidth included
        return str(unicodedata.decimal(ch))
    if category == "Pd":  # en dash, hyphen, minus-like dashes used as separators
        return "-"
    if category == "Zs":
        return " "
    return unicodedata.normalize("NFKC", ch)


@dataclass(frozen=True, slots=True)
class View:
    """A normalised copy of `original` with a map from its offsets back to the original.

    The map is a list of segments: `(view_start, orig_start, identity)`. An identity
    segment maps character for character; any other segment is the expansion of one
    original character (possibly into several view characters, or none when stripped).
    """

    original: str
    text: str
    _view_starts: tuple[int, ...] = (0,)
    _orig_starts: tuple[int, ...] = (0,)
    _identity: tuple[bool, ...] = (True,)

    @property
    def is_identity(self) -> bool:
        return self.text is self.original

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map the view span [start, end) (end > start) to the original text."""
        if self.is_identity:
            return start, end
        return self._orig_at(start), self._orig_at(end - 1) + 1

    def _orig_at(self, pos: int) -> int:
        k = bisect_right(self._view_starts, pos) - 1
        if self._identity[k]:
            return self._orig_starts[k] + pos - self._view_starts[k]
        return self._orig_starts[k]


def normalise(text: str) -> View:
    """Build the detection view of `text` in one pass over its non-ASCII runs."""
    if text.isascii():
        return View(text, text)
    parts: list[str] = []
    view_starts: list[int] = []
    orig_starts: list[int] = []
    identity: list[bool] = []
    vpos = 0
    last = 0  # original offset up to which text has been copied unchanged

    def copy_to(stop: int) -> None:
        nonlocal vpos, last
        if stop > last:
            view_starts.append(vpos)
            orig_starts.append(last)
            identity.append(True)
            parts.append(text[last:stop])
            vpos += stop - last
            last = stop

    changed = False
    for run_start, run_end in _non_ascii_runs(text):
        for i in range(run_start, run_end):
            ch = text[i]
            rep = _normalise_char(ch)
            if rep == ch:
                continue
            changed = True
            copy_to(i)
            if rep:
                view_starts.append(vpos)
                orig_starts.append(i)
                identity.append(False)
                parts.append(rep)
                vpos += len(rep)
            last = i + 1
    if not changed:
        return View(text, text)
    copy_to(len(text))
    if not view_starts:  # everything was invisible
        view_starts, orig_starts, identity = [0], [len(text)], [False]
    return View(text, "".join(parts), tuple(view_starts), tuple(orig_starts), tuple(identity))


def normalise_value(value: str) -> str:
    """The normalised text of a short value, as detection sees it."""
    return normalise(value).text
