"""Checksums and validity rules, one pure function per entity format.

    luhn_ok("4111111111111111")          # True
    iban_ok("GB82WEST12345698765432")    # True: length for GB and mod-97 == 1
    ssn_ok("078", "05", "1120")          # True (format only: the famous Woolworth number)

Each takes the candidate with separators already removed, in upper case where letters
matter; recognizers call them after their pattern matched.
"""

from __future__ import annotations

import re

__all__ = [
    "IBAN_LENGTHS",
    "card_ok",
    "iban_ok",
    "ip_key",
    "ip_ok",
    "luhn_ok",
    "nino_ok",
    "ssn_ok",
]

# ISO 13616 registry: country code -> IBAN length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Issuer prefixes of the networks in use: Visa 4; Mastercard 51-55 and 2221-2720;
# Amex 34/37; Diners 30/36/38/39; JCB 35 (and the old 15-digit 1800/2131); Discover,
# UnionPay, Maestro 5x/6x.
_CARD_PREFIX = re.compile(r"4|5[0-8]|2[2-7]|3[04-9]|6|1800|2131")
# Maestro, the one network that issues 12-digit numbers (12-19 digits; IIN 50, 56-69).
# Only those 12-digit numbers count: a 12-digit order or tracking number passes Luhn one
# time in ten, and only about one in three of those starts 50 or 56-69.
_MAESTRO_PREFIX = re.compile(r"50|5[6-9]|6")
# ISO 7064 reads A as 10 ... Z as 35 (either case, as `int(ch, 36)` does).
_LETTER_VALUES = {
    ord(ch): str(int(ch, 36)) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
}
_NINO_FIRST_BAD = frozenset("DFIQUV")
_NINO_SECOND_BAD = frozenset("DFIOQUV")
_NINO_PREFIX_BAD = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def luhn_ok(digits: str) -> bool:
    """The Luhn mod-10 check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_ok(digits: str) -> bool:
    """13-19 digits with a known issuer prefix, or 12 with a Maestro one; Luhn-valid."""
    size = len(digits)
    if size == 12:
        prefix = _MAESTRO_PREFIX
    elif 13 <= size <= 19:
        prefix = _CARD_PREFIX
    else:
        return False
    return digits.isdigit() and prefix.match(digits) is not None and luhn_ok(digits)


def iban_ok(iban: str) -> bool:
    """Upper-case IBAN without spaces: the country's length and ISO 7064 mod 97-10."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    if not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int(rearranged.translate(_LETTER_VALUES)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000."""
    return (
        area != "000"
        and area != "666"
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


def nino_ok(nino: str) -> bool:
    """HMRC rules for a 9-character upper-case NINO: prefix letters and suffix A-D."""
    if len(nino) != 9 or not nino[2:8].isdigit() or nino[8] not in "ABCD":
        return False
    first, second = nino[0], nino[1]
    return (
        first.isalpha()
        and second.isalpha()
        and first not in _NINO_FIRST_BAD
        and second not in _NINO_SECOND_BAD
        and nino[:2] not in _NINO_PREFIX_BAD
    )


# RFC 3986 IPv4address and IPv6address (RFC 4291 text forms): exactly what `ipaddress`
# accepts (no zone, no leading zeros in a dotted quad), in one match instead of its
# split-and-parse in Python. tests/redaction compares the two on generated strings.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV4_FULL = re.compile(_IPV4)
_IPV6_FULL = re.compile(
    rf"(?:{_H16}:){{6}}{_LS32}"
    rf"|::(?:{_H16}:){{5}}{_LS32}"
    rf"|(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}"
    rf"|(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}"
    rf"|(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}"
    rf"|(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}"
    rf"|(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}"
    rf"|(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}"
    rf"|(?:(?:{_H16}:){{0,6}}{_H16})?::"
)


def ip_ok(candidate: str) -> bool:
    """A valid IPv4 or IPv6 address, as the `ipaddress` module would parse it."""
    full = _IPV6_FULL if ":" in candidate else _IPV4_FULL
    return full.fullmatch(candidate) is not None


def ip_key(candidate: str) -> str | None:
    """One spelling per address: IPv6 as eight lower-case hextets without leading
    zeros (an IPv4 tail as two of them), IPv4 as written; None if not an address."""
    if not ip_ok(candidate):
        return None
    if ":" not in candidate:
        return candidate  # a valid dotted quad has one spelling
    head, _, tail = candidate.rpartition(":")
    if "." in tail:
        a, b, c, d = (int(octet) for octet in tail.split("."))
        candidate = f"{head}:{a << 8 | b:x}:{c << 8 | d:x}"
    if "::" in candidate:
        left, _, right = candidate.partition("::")
        lo, hi = left.split(":") if left else [], right.split(":") if right else []
        candidate = ":".join([*lo, *["0"] * (8 - len(lo) - len(hi)), *hi])
    if ":0" in ":" + candidate:  # a hextet with a leading zero (or "0": it stays "0")
        candidate = ":".join([part.lstrip("0") or "0" for part in candidate.split(":")])
    return candidate.lower()
