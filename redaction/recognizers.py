"""Built-in recognizers: one small unit per entity, a pattern plus a validator.

    EMAIL.find("write to ana [at] example [dot] com")   # [(9, 35)]
    CREDIT_CARD.validate("4111 1111 1111 1111")          # True

A recognizer only detects: it yields (start, end) spans of the text it is given.
Replacing is the `Redactor`'s job. Number-based recognizers declare `min_digits`: every
span they yield holds at least that many ASCII digits, which lets the redactor skip them
on text without enough digits; they read the text only at its digit clusters.
They expect the normalised view (ASCII digits); `Redactor` provides it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

from .numbers import Run, digit_clusters, digit_runs, pick_windows, text_mask
from .text import ascii_bytes
from .validators import IBAN_LENGTHS, card_ok, iban_ok, ip_ok, nino_ok, ssn_ok

__all__ = [
    "ANCHOR",
    "BUILTIN",
    "CardRecognizer",
    "EmailRecognizer",
    "IbanRecognizer",
    "Ipv4Recognizer",
    "Ipv6Recognizer",
    "NinoRecognizer",
    "PhoneRecognizer",
    "Recognizer",
    "SsnRecognizer",
]


@runtime_checkable
class Recognizer(Protocol):
    """Finds the spans of one entity in a text. Must not raise on any input."""

    @property
    def entity(self) -> str: ...

    def find(self, text: str) -> Iterable[tuple[int, int]]: ...


# Hot paths below clamp offsets with conditional expressions rather than `max`/`min`: a
# builtin call costs about ten times a compare. A regular expression's `pos` below 0 and
# `endpos` past the end read as 0 and the end, so its offsets need no clamping at all.


def _context(text: str, start: int, keywords: re.Pattern[str], width: int = 40) -> bool:
    """A keyword in the `width` characters before `start`, within the same sentence."""
    begin = start - width if start > width else 0
    sentence = max(text.rfind(". ", begin, start), text.rfind("\n", begin, start)) + 1
    return keywords.search(text, sentence if sentence > begin else begin, start) is not None


# ---------------------------------------------------------------- EMAIL

_DOT = r"(?:\.|[ \t]{0,2}[\[({<][ \t]?(?i:dot)[ \t]?[\])}>][ \t]{0,2}|[ \t]{1,2}(?i:dot)[ \t]{1,2})"
_SPELLED_DOT = (
    r"(?:[ \t]{0,2}[\[({<][ \t]?(?i:dot)[ \t]?[\])}>][ \t]{0,2}|[ \t]{1,2}(?i:dot)[ \t]{1,2})"
)
_LABEL = r"[^\W_](?:[\w\-]{0,61}[^\W_])?"
_TLD = r"[^\W\d_]{2,24}"
_EMAIL = re.compile(
    r"(?<![\w%+\-])[\w%+\-](?:[\w.%+\-]{0,63}(?<!\.))?"
    r"(?:(?:@|[ \t]{0,2}[\[({<][ \t]?(?i:at)[ \t]?[\])}>][ \t]{0,2})"
    rf"(?:{_LABEL}{_DOT}){{1,8}}{_TLD}"
    rf"|[ \t]{{1,2}}(?i:at)[ \t]{{1,2}}(?:{_LABEL}{_SPELLED_DOT}){{1,8}}{_TLD})"
    r"(?![\w\-@])"
)


# Up to the last character that cannot be in a local part (`str.isalnum` or "._%+-";
# what `\w` adds to `isalnum` is "_"): one match, backtracking from the "@".
_BEFORE_LOCAL_PART = re.compile(r"(?s:.*)[^\w.%+\-]")


def _may_be_spelled(text: str) -> bool:
    """Whether `text` holds "dot" or "at]" (any case; "at )" too): the spelled forms'
    anchors. Both are looked for in the text's mask (`numbers.text_mask`: its letters
    "d", "o" and "t", lower-cased, and closing brackets, as b"]", and nothing else, so
    `bytes.find` skips ahead fast; the redactor's digit scan reads the same mask): "at"
    before a closing bracket from the brackets, which are rare in prose."""
    mask = text_mask(text)
    if b"dot" in mask:
        return True
    raw = ascii_bytes(text)
    pos = mask.find(b"]")
    while pos != -1:
        before = raw[max(0, pos - 3) : pos].lower()
        if before.endswith(b"at") or (before[-1:] in (b" ", b"\t") and before[-3:-1] == b"at"):
            return True
        pos = mask.find(b"]", pos + 1)
    return False


class EmailRecognizer:
    """Addresses, also spelled "name [at] domain [dot] com" or "name at domain dot com".

    A plain " at " counts only with spelled dots, so "look at example.com" is no address.
    """

    entity = "EMAIL"
    min_digits = 0

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if _may_be_spelled(text):
            yield from (found.span() for found in _EMAIL.finditer(text))
            return
        # Only "@" forms are possible: walk back from each "@" to where the address starts.
        end = 0
        at = text.find("@")
        while at != -1:
            # the local part: the (at most 64) address characters right before the "@"
            lo = at - 64 if at - 64 > end else end
            before = _BEFORE_LOCAL_PART.match(text, lo, at)
            start = lo if before is None else before.end()
            while start < at and text[start] == ".":
                start += 1
            m = _EMAIL.match(text, start) if start < at else None
            if m is not None and m.end() > at:
                yield m.span()
                end = m.end()
            at = text.find("@", at + 1 if at >= end else end)

    def validate(self, candidate: str) -> bool:
        return _EMAIL.fullmatch(candidate) is not None


# ---------------------------------------------------------------- numbers in runs

_PHONE_SEP = re.compile(r" |-| - |\.|/|\)|\) |\)-|\( ?| \(|\) \(")
_PHONE_WORDS = re.compile(
    r"(?i:phone|tel\b|call|mobile|cell|ring|text|whatsapp|contact|fax|reach|number)"
)
_SSN_WORDS = re.compile(r"(?i:ssn|social security|soc\.? ?sec|taxpayer|\btin\b)")


def _spoken_of(text: str, start: int) -> bool:
    """A phone word shortly before, and not a "#123" reference."""
    return (start == 0 or text[start - 1] != "#") and _context(text, start, _PHONE_WORDS)


def _window_start(run: Run, i: int) -> int:
    """Where a window from group `i` starts: with the run's prefix, or its "("."""
    if i == 0 and run.prefix:
        return run.start
    if i > 0 and run.seps[i - 1].endswith("("):
        return run.groups[i][0] - 1
    return run.groups[i][0]


def _window(run: Run, i: int, j: int) -> tuple[int, int] | None:
    """The window's span with its parentheses, or None when they do not balance."""
    text = run.text
    start, end = _window_start(run, i), run.groups[j][1]
    depth = text.count("(", start, end) - text.count(")", start, end)
    if depth == 1 and text.startswith(")", end):
        end += 1
        depth = 0
    return (start, end) if depth == 0 else None


class PhoneRecognizer:
    """E.164 (+ or 00), NANP, UK and common EU national numbers, grouped as people write."""

    entity = "PHONE"
    min_digits = 7

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for run in digit_runs(text):
            # `_judge` takes 9-11 digits, except from where a window can be international
            # (7-17): the "+" prefix, or a group starting "00" (one C-level search first)
            wide = None
            if "+" in run.prefix or "|00" in "|" + "|".join(run.values):
                starts = [k for k, value in enumerate(run.values) if value.startswith("00")]
                wide = ([0, *starts] if "+" in run.prefix else starts), 7, 17
            yield from pick_windows(run, self._judge, 9, 11, wide)

    def validate(self, candidate: str) -> bool:
        return any(span == (0, len(candidate)) for span in self.find(candidate))

    def _judge(self, run: Run, i: int, j: int, count: int) -> tuple[int, int] | None:
        # The digits decide most windows, so they are looked at first; the separators
        # and the parentheses only for a window whose digits make a phone number.
        text = run.text
        international = i == 0 and "+" in run.prefix
        if not international and not run.values[i].startswith("00"):
            if not 9 <= count <= 11:  # what `_national` accepts, and nothing else does
                return None
        seps = run.seps[i:j]
        values = list(run.values[i : j + 1])
        if international and len(values) > 2 and values[1] == "0" and seps[0].endswith("("):
            values.pop(1)  # the "(0)" trunk digit of "+44 (0)20 ..."
        digits = "".join(values)
        if len(digits) < 7:
            return None
        lengths = [len(v) for v in values]
        if international:
            ok = 8 <= len(digits) <= 15 and digits[0] != "0"
        elif digits.startswith("00") and lengths[0] >= 2:
            rest = digits[2:]
            ok = 8 <= len(rest) <= 15 and rest[0] != "0"
            if ok and len(values) == 1:  # bare "0049..." only where a phone is talked about
                ok = _spoken_of(text, _window_start(run, i))
        else:
            ok = self._national(text, _window_start(run, i), digits, lengths)
        if not ok or any(_PHONE_SEP.fullmatch(sep) is None for sep in seps):
            return None
        if sum(sep.count("/") for sep in seps) > 1:
            return None
        return _window(run, i, j)

    @staticmethod
    def _national(text: str, start: int, digits: str, lengths: list[int]) -> bool:
        n = len(digits)
        grouped = len(lengths) > 1
        if not grouped and 9 <= n <= 11 and _spoken_of(text, start):
            return True  # "call me on 3500820489": bare national numbers after a phone word
        if digits[0] == "0":  # UK / EU trunk prefix
            if digits[1] == "0" or not 9 <= n <= 11:
                return False
            if not grouped:
                return n >= 10
            return 2 <= lengths[0] <= 5 and min(lengths[1:]) >= 2
        if n == 10 and digits[0] in "23456789":
            if lengths in ([3, 3, 4], [3, 7]):
                return digits[0] == "3" or digits[3] in "23456789"  # IT mobiles start 3
            return False
        if n == 11 and digits[0] == "1" and lengths == [1, 3, 3, 4]:
            return digits[1] in "23456789" and digits[4] in "23456789"
        if n == 9 and digits[0] in "6789":  # ES
            return lengths in ([3, 3, 3], [3, 2, 2, 2])
        return False


_CARD_SEPS = frozenset((" ", "-", "."))


class CardRecognizer:
    """13-19 digits with a known issuer prefix, or 12 with a Maestro prefix (50, 56-69)
    written as a number of its own; a valid Luhn digit."""

    entity = "CREDIT_CARD"
    min_digits = 12

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for run in digit_runs(text):
            # A window of 12 digits counts only as the whole run (see `_judge`).
            yield from pick_windows(run, self._judge, 12 if run.totals[-1] == 12 else 13, 19)

    def validate(self, candidate: str) -> bool:
        return any(span == (0, len(candidate)) for span in self.find(candidate))

    @staticmethod
    def _judge(run: Run, i: int, j: int, count: int) -> tuple[int, int] | None:
        if count == 12 and (i > 0 or j < len(run.groups) - 1):
            return None  # a 12-digit card stands alone, not inside a longer number
        if not _CARD_SEPS.issuperset(run.seps[i:j]):  # (a set method, not a generator)
            return None
        if not card_ok(run.digits(i, j)):
            return None
        return run.groups[i][0], run.groups[j][1]


def _has_ssn_groups(lengths: list[int]) -> bool:
    """Whether groups of 3, 2 and 4 digits follow one another."""
    return any(lengths[k : k + 3] == [3, 2, 4] for k in range(len(lengths) - 2))


class SsnRecognizer:
    """AAA-GG-SSSS with one separator kind; nine bare digits only after an SSN keyword."""

    entity = "US_SSN"
    min_digits = 9

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for run in digit_runs(text):
            # `_judge` takes a group of 9 digits or groups of 3, 2 and 4: a run without
            # either (one `map`, one or two `in`) has no window to judge
            if not run.prefix:
                lengths = list(map(len, run.values))
                if 9 in lengths or (3 in lengths and _has_ssn_groups(lengths)):
                    yield from pick_windows(run, self._judge, 9, 9)

    def validate(self, candidate: str) -> bool:
        return any(span == (0, len(candidate)) for span in self.find(candidate))

    @staticmethod
    def _judge(run: Run, i: int, j: int, count: int) -> tuple[int, int] | None:
        digits = run.digits(i, j)
        lengths = run.lengths(i, j)
        start, end = run.groups[i][0], run.groups[j][1]
        if lengths == [3, 2, 4]:
            sep = run.seps[i]
            if sep not in ("-", " ", ".") or run.seps[i + 1] != sep:
                return None
        elif lengths != [9] or not _context(run.text, start, _SSN_WORDS):
            return None
        return (start, end) if ssn_ok(digits[:3], digits[3:5], digits[5:]) else None


# ---------------------------------------------------------------- IBAN, NINO

_IBAN_HEAD = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]{2}[0-9]{2}")
# After the head, the country's number of characters, each after an optional separator.
_IBAN_BODY = {
    length: re.compile(rf"(?:[ \-]?[A-Za-z0-9]){{{length - 4}}}")
    for length in set(IBAN_LENGTHS.values())
}


class IbanRecognizer:
    """Country code, check digits and BBAN of the country's length; mod-97 checked."""

    entity = "IBAN"
    min_digits = 6

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        # The check digits open a cluster's digits, so the head is looked for only
        # there, from two characters before; the body only where a head is.
        pos = 0
        for first, last, digits in digit_clusters(text):
            if digits < 2:  # no room for the check digits
                continue
            head = _IBAN_HEAD.search(text, first - 2 if first - 2 > pos else pos, last)
            while head is not None:
                start = head.start()
                span = self._body(text, start)
                if span is None:
                    head = _IBAN_HEAD.search(text, start + 1, last)
                else:
                    yield span
                    pos = span[1]
                    head = _IBAN_HEAD.search(text, pos, last)

    @staticmethod
    def _body(text: str, start: int) -> tuple[int, int] | None:
        """The IBAN whose head is at `start`: the country's length, mod-97 checked."""
        length = IBAN_LENGTHS.get(text[start : start + 2].upper())
        if length is None:
            return None
        # the country's number of characters after the four of the head, if there are
        # that many (what a greedy "10 to 32 of them" pattern would have taken first
        # holds them: no country has more than 29)
        m = _IBAN_BODY[length].match(text, start + 4)
        if m is None:
            return None
        pos = m.end()
        if pos < len(text) and (text[pos].isalnum() or text[pos] == "_"):
            return None
        # (two `str.replace` calls: cheaper than a regular expression `sub`)
        ok = iban_ok(text[start:pos].replace(" ", "").replace("-", "").upper())
        return (start, pos) if ok else None

    def validate(self, candidate: str) -> bool:
        return any(span == (0, len(candidate)) for span in self.find(candidate))


_NINO = re.compile(
    r"(?<![A-Za-z0-9_])[A-Za-z]{2}[ \-]?[0-9]{2}[ \-]?[0-9]{2}[ \-]?[0-9]{2}[ \-]?[A-Da-d]"
    r"(?![A-Za-z0-9_])"
)


class NinoRecognizer:
    """UK National Insurance numbers: valid prefix letters, six digits, suffix A-D."""

    entity = "UK_NINO"
    min_digits = 6

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        # Two letters and a separator come before the six digits; the suffix, a
        # separator and the character the look-ahead reads come after.
        for first, last, digits in digit_clusters(text):
            if digits < 6:
                continue
            for m in _NINO.finditer(text, first - 3, last + 3):
                if self.validate(m.group()):
                    yield m.span()

    def validate(self, candidate: str) -> bool:
        return nino_ok(candidate.replace(" ", "").replace("-", "").upper())


# ---------------------------------------------------------------- IP addresses

_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV4_AFTER = re.compile(r"[0-9A-Za-z_]|\.[0-9]")
_VERSION_WORDS = re.compile(r"(?i:version|\bver\.?|\bv|build|release|firmware|\bapp)\s*[:#]?\s*$")
_HEX_COLON = frozenset("0123456789abcdefABCDEF:.")
_HEX_COLON_RUN = re.compile(r"[0-9a-fA-F:.]*")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class Ipv4Recognizer:
    """Dotted quads the `ipaddress` module accepts, except after "version", "build", ..."""

    entity = "IP_ADDRESS"
    min_digits = 4

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        raw = ascii_bytes(text)  # the digit mask's bytes: a `bytes.find` is cheaper
        for first, last, digits in digit_clusters(text):  # a dotted quad is in one cluster
            if digits < 4 or raw.count(b".", first, last) < 3:  # it holds three dots
                continue
            m = _IPV4.search(text, first, last)
            while m is not None:
                start, end = m.span()
                before = text[start - 1] if start else " "
                if (
                    before not in _WORD
                    and before not in ".:"
                    and _IPV4_AFTER.match(text, end) is None
                    and ip_ok(m.group())
                    and _VERSION_WORDS.search(text, start - 20, start) is None
                ):
                    yield start, end
                    m = _IPV4.search(text, end, last)
                else:
                    m = _IPV4.search(text, start + 1, last)

    def validate(self, candidate: str) -> bool:
        return any(span == (0, len(candidate)) for span in self.find(candidate))


# Up to the last character before `pos` that cannot be in an address: one match,
# backtracking from `pos` (see `_token_start`).
_BEFORE_TOKEN = re.compile(r"(?s:.*)[^0-9a-fA-F:.]")


def _token_start(text: str, colon: int) -> int:
    """Where the run of hex digits, colons and dots around `colon` starts.

    Looked for in the 8 characters before it with one match (an address has at most 4
    hex digits before its first colon); a longer run is walked back character by
    character (rare: it is no address, but its start is what the checks read)."""
    lo = colon - 8
    before = _BEFORE_TOKEN.match(text, lo, colon)  # (a negative `pos` reads as 0)
    if before is not None:
        return before.end()
    if lo <= 0:
        return 0
    start = lo
    while start > 0 and text[start - 1] in _HEX_COLON:
        start -= 1
    return start


class Ipv6Recognizer:
    """IPv6 addresses (also with an embedded IPv4 tail), found from their colons."""

    entity = "IP_ADDRESS"
    min_digits = 0

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        # Colons are found in the text's ASCII bytes (`bytes.find` is memchr). An
        # address's first colon has the next one at most five characters on (a hextet
        # has at most four), and the loop reaches it before its other colons (it moves
        # past the whole run around a colon it checks), so a colon without one is
        # skipped unchecked: most prose colons ("Re: ...", "10:30") are.
        find = ascii_bytes(text).find
        n = len(text)
        colon = find(b":")
        while colon != -1:
            if find(b":", colon + 1, colon + 6) == -1:
                colon = find(b":", colon + 1)
                continue
            start = _token_start(text, colon)
            end = _HEX_COLON_RUN.match(text, colon).end()  # type: ignore[union-attr]
            while end > colon + 1 and text[end - 1] == ".":  # a sentence's full stop
                end -= 1
            while start < colon and text[start] == ".":
                start += 1
            token = text[start:end]
            if (
                token.count(":") >= 2
                and token.strip(":.")  # a character other than ":" and "."
                and (start == 0 or text[start - 1] not in _WORD)
                and (end == n or text[end] not in _WORD)
                and ip_ok(token)
            ):
                yield start, end
            colon = find(b":", end if end > colon else colon + 1)

    def validate(self, candidate: str) -> bool:
        return any(span == (0, len(candidate)) for span in self.find(candidate))


# Every span a built-in recognizer finds holds a match of ANCHOR: the number-based ones
# hold digits, an e-mail "@" or a spelled "at]" / "dot" (see `_may_be_spelled`), an
# IPv6 address colons. Text without one holds nothing to find (`Redactor._may_hold`).
# Written to open with a character set, which the regular expression engine scans for
# before it tries a match (a case-insensitive alternative would be tried at every offset).
ANCHOR = re.compile(r"[0-9@:dDaA](?:(?<=[dD])[oO][tT]|(?<=[aA])[tT][ \t]?[\])}>]|(?<=[0-9@:]))")

EMAIL = EmailRecognizer()
PHONE = PhoneRecognizer()
CREDIT_CARD = CardRecognizer()
IBAN = IbanRecognizer()
IPV4 = Ipv4Recognizer()
IPV6 = Ipv6Recognizer()
US_SSN = SsnRecognizer()
UK_NINO = NinoRecognizer()

# Entity name -> the recognizers that detect it.
BUILTIN: dict[str, tuple[Recognizer, ...]] = {
    "EMAIL": (EMAIL,),
    "PHONE": (PHONE,),
    "CREDIT_CARD": (CREDIT_CARD,),
    "IBAN": (IBAN,),
    "IP_ADDRESS": (IPV4, IPV6),
    "US_SSN": (US_SSN,),
    "UK_NINO": (UK_NINO,),
}
