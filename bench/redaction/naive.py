"""Reference row "naive combined regex": what issue #3's goal is anchored on.

One compiled alternation of straightforward per-entity patterns, run with `finditer`
over the NFKC-normalised text; each match is checked by its entity's validator (Luhn,
mod 97, `ipaddress`, the SSA and HMRC rules) and replaced by a placeholder. No
prefilter, no digit clusters, no confirming scan: the approach one would write first.
Spans are offsets into the normalised text (NFKC rarely changes a text's length here).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from redaction.validators import iban_ok, luhn_ok, nino_ok, ssn_ok

_H = r"[0-9A-Fa-f]{1,4}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# Alternatives in order of specificity: at one offset the first that matches wins.
PATTERNS = {
    "EMAIL": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",
    "IBAN": r"\b[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,30}\b",
    "IPV6": rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:(?:{_H}(?::{_H}){{0,6}})?"
    rf"|::{_H}(?::{_H}){{0,6}})(?![\w:])",
    "IPV4": rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b",
    "US_SSN": r"\b[0-9]{3}[\- ][0-9]{2}[\- ][0-9]{4}\b",
    "UK_NINO": r"\b[A-Za-z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Da-d]\b",
    "CREDIT_CARD": r"\b(?:[0-9][ \-]?){12,18}[0-9]\b",
    "PHONE": r"(?<![\w+])(?:(?:\+|00)[0-9]{1,3}[ .\-]?)?\(?[0-9]{2,5}\)?"
    r"[ .\-]?[0-9]{3,4}[ .\-]?[0-9]{2,4}(?:[ .\-]?[0-9]{2,4})?(?!\w)",
}
COMBINED = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in PATTERNS.items()))
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")
_NON_DIGITS = re.compile(r"[^0-9]")


def _ip_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _valid(name: str, value: str) -> bool:
    if name == "IBAN":
        return iban_ok(_NON_ALNUM.sub("", value).upper())
    if name == "CREDIT_CARD":
        return luhn_ok(_NON_DIGITS.sub("", value))
    if name in ("IPV4", "IPV6"):
        return _ip_ok(value)
    if name == "US_SSN":
        digits = _NON_DIGITS.sub("", value)
        return ssn_ok(digits[:3], digits[3:5], digits[5:])
    if name == "UK_NINO":
        return nino_ok(_NON_ALNUM.sub("", value).upper())
    if name == "PHONE":
        return 8 <= len(_NON_DIGITS.sub("", value)) <= 15
    return True  # EMAIL: the pattern is the check


def detect(text: str) -> list[tuple[str, int, int]]:
    """(entity, start, end) of each validated match in the NFKC-normalised text."""
    return _find(unicodedata.normalize("NFKC", text))


def _find(norm: str) -> list[tuple[str, int, int]]:
    found = []
    for m in COMBINED.finditer(norm):
        name = m.lastgroup
        assert name is not None
        if _valid(name, m.group()):
            entity = "IP_ADDRESS" if name in ("IPV4", "IPV6") else name
            found.append((entity, m.start(), m.end()))
    return found


def redact(text: str) -> str:
    """The normalised text with each detected value replaced by `<ENTITY_n>`."""
    norm = unicodedata.normalize("NFKC", text)
    numbers: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}
    out: list[str] = []
    last = 0
    for entity, start, end in _find(norm):
        key = (entity, norm[start:end])
        placeholder = numbers.get(key)
        if placeholder is None:
            counts[entity] = counts.get(entity, 0) + 1
            placeholder = numbers[key] = f"<{entity}_{counts[entity]}>"
        out += (norm[last:start], placeholder)
        last = end
    out.append(norm[last:])
    return "".join(out)
