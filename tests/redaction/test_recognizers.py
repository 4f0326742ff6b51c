"""Per-recognizer tables: what each detector must find, and the look-alikes it must not."""

from __future__ import annotations

import pytest

from redaction.numbers import digit_clusters, digit_runs
from redaction.recognizers import (
    BUILTIN,
    CREDIT_CARD,
    EMAIL,
    IBAN,
    IPV4,
    IPV6,
    PHONE,
    UK_NINO,
    US_SSN,
    Recognizer,
)
from redaction.validators import card_ok, iban_ok, luhn_ok, nino_ok, ssn_ok


def found(rec: Recognizer, text: str) -> list[str]:
    return [text[s:e] for s, e in rec.find(text)]


def table(rec: Recognizer, positives: list[str], negatives: list[str]):  # type: ignore[no-untyped-def]
    cases = [(rec, p, True) for p in positives] + [(rec, n, False) for n in negatives]
    return pytest.mark.parametrize(("rec", "value", "expected"), cases)


def check_value(rec: Recognizer, value: str, expected: bool) -> None:
    # Alone, and inside a sentence: found exactly, or not at all.
    assert found(rec, value) == ([value] if expected else [])
    sentence = f"Hi, it is {value} thanks."
    assert found(rec, sentence) == ([value] if expected else [])


@table(
    EMAIL,
    [
        "ana@example.com",
        "ana.b+tag@mail.example.co.uk",
        "O'Neil@example.org".replace("'", ""),
        "josé@exämple.de",
        "ana [at] example [dot] com",
        "ana (at) example dot com",
        "ana at example dot com",
        "ana{at}example{dot}org",
        "ana AT example DOT com",
        "ana@example dot com",
    ],
    ["@example.com", "ana@", "ana@localhost", "ana@example.c", "look at example.com", "x@y"],
)
def test_email(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


def test_email_window_search_finds_each_address_once() -> None:
    text = "a@b.co, c.d@e.org; f@g" + "@" * 3 + " h@i.io"
    assert found(EMAIL, text) == ["a@b.co", "c.d@e.org", "h@i.io"]
    assert found(EMAIL, ".a@b.co") == ["a@b.co"]
    assert found(EMAIL, "x" * 70 + "@b.co") == []  # local part over 64 characters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ana [AT] example.com (see)", ["ana [AT] example.com"]),  # "at" right before "]"
        ("ana (at ) example.com", ["ana (at ) example.com"]),  # ... or a space before ")"
        ("ana [x] example.com, ok (what)", []),  # brackets without "at"
        ("\u20ac ana <at> example.com", ["ana <at> example.com"]),  # non-ASCII text
    ],
)
def test_spelled_at_is_found_from_the_closing_bracket(text: str, expected: list[str]) -> None:
    assert found(EMAIL, text) == expected


@table(
    PHONE,
    [
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+1 202-555-0173",
        "+33 6 12 34 56 78",
        "+4915112345678",
        "0044 20 7946 0958",
        "(202) 555-0173",
        "202-555-0173",
        "202.555.0173",
        "1 202 555 0173",
        "020 7946 0958",
        "07700 900123",
        "07700900123",
        "06 12 34 56 78",
        "030/1234567",
        "06-12345678",
        "612 345 678",
        "612 34 56 78",
        "333 123 4567",
    ],
    [
        "2026-01-15",
        "15/01/2026",
        "01.02.2026",
        "12345",
        "555-0100",
        "2025550173",  # bare ten digits without a phone word
        "123 456 7890",
        "0000 000 000",
        "0049 1234",
        "+44 (0 20 7946 0958",
        "0800 12",
        "1.2.3",
        "+0 20 7946 0958",
    ],
)
def test_phone(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me on 2025550173", ["2025550173"]),
        ("order ORD-2026-004512 shipped", []),
        ("ref #2025550173", []),
        ("2025550173 is my number", []),  # the phone word must come before
        ("tel 0 020 794 61", []),  # "0" then "0...": no trunk prefix is "00"
        ("on 15/01/2026 020 7946 0958", ["020 7946 0958"]),
        ("qty 2 020 7946 0958", ["020 7946 0958"]),
        ("call 020 7946 0958. 3 days", ["020 7946 0958"]),
        ("tel (020) 7946 0958", ["(020) 7946 0958"]),
        ("call (020 7946 0958) now", ["(020 7946 0958)"]),  # the closing ")" is taken
        ("(call 202 555 0173)", ["202 555 0173"]),
        ("020 7946 0958 2345 6789", ["020 7946 0958"]),  # the longest valid window
        ("call 020 7946 0958 15/01/2026", ["020 7946 0958"]),  # a window stops at a date
        ("fax 030/123/4567", []),  # one slash at most
        ("tel +44 (0)20 79", []),  # six digits once "(0)" is dropped
    ],
)
def test_phone_in_context(text: str, expected: list[str]) -> None:
    assert found(PHONE, text) == expected


@table(
    CREDIT_CARD,
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",
        "2223 0031 2200 3222",
        "3782 822463 10005",
        "6011 1111 1111 1117",
        "3530111333300000",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "4222222222222",
        # Maestro, the one network with 12-digit numbers: IIN 50, 56-69 and Luhn-valid.
        "501800000009",
        "6759 6498 2648",
        "5600-0000-0003",
        "6011 0000 0004",
    ],
    [
        "4111111111111112",  # Luhn fails
        "1234 5678 9012 3456",
        "9400 1000 0000 0000 0000 00",
        "0000 0000 0000 0000",
        "4111/1111/1111/1111",
        # 12-digit look-alikes: Luhn-valid order, tracking and reference numbers without
        # a Maestro prefix, and Maestro-prefixed ones that fail Luhn.
        "411111111117",
        "5105 1051 0512",  # 51: Mastercard, which has no 12-digit numbers
        "378282246313",
        "2026 0115 0933",
        "501800000008",
        "6759 6498 2649",
        "67596498264",  # 11 digits
    ],
)
def test_credit_card(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


def test_card_next_to_a_quantity_is_still_found() -> None:
    assert found(CREDIT_CARD, "qty 2 4111 1111 1111 1111 ok") == ["4111 1111 1111 1111"]


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("501800000009", True),
        ("560000000003", True),
        ("601100000004", True),
        ("411111111117", False),  # Luhn-valid, but Visa has no 12-digit numbers
        ("550000000004", False),  # nor has Mastercard (51-55)
        ("4111111111111111110", True),  # 19 digits
        ("41111111111111111113", False),  # 20 digits
        ("50180000009", False),  # 11 digits
    ],
)
def test_card_lengths_and_prefixes(digits: str, ok: bool) -> None:
    assert card_ok(digits) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Maestro 6759 6498 2648, exp 12/27", ["6759 6498 2648"]),
        ("1234 5678 9012 3456", []),  # its last twelve digits pass as Maestro
        ("ref 1 5018 0000 0009", []),  # twelve digits must stand alone
        ("qty 2 4111 1111 1111 1111", ["4111 1111 1111 1111"]),  # thirteen and more need not
    ],
)
def test_a_12_digit_card_is_a_number_of_its_own(text: str, expected: list[str]) -> None:
    assert found(CREDIT_CARD, text) == expected


@table(
    IBAN,
    [
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "gb82 west 1234 5698 7654 32",
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
    ],
    [
        "GB82WEST12345698765431",  # mod 97 fails
        "GB82WEST1234569876543",  # too short for GB
        "XX82WEST12345698765432",  # no such country
        "GB82WEST12345698765432X",
        "ON12 MARCH 2026 AT NOON",
    ],
)
def test_iban(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


def test_iban_followed_by_words_and_another_iban() -> None:
    text = "GB82 WEST 1234 5698 7654 32 and DE89370400440532013000 too"
    assert found(IBAN, text) == ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"]


def test_iban_is_looked_for_only_where_digits_are() -> None:
    # Sixteen letters split this (valid, if unusual) IBAN's digits into two clusters;
    # the search resumes after it. "AB12 345" has a head but is too short.
    text = "AB12 345 then GB47ABCDEFGHIJKLMNOP12 and GB82 WEST 1234 5698 7654 32"
    assert found(IBAN, text) == ["GB47ABCDEFGHIJKLMNOP12", "GB82 WEST 1234 5698 7654 32"]
    assert found(IBAN, "no digits at all, DEXX") == []


def test_digit_clusters_are_counted_and_small_ones_skipped() -> None:
    text = "card 4111 1111 1111 1111, and much later on: ref 77"
    assert digit_clusters(text) == ((5, 24, 16), (49, 51, 2))
    # Too few digits for a NINO, a dotted quad without dots, a run too short for a phone.
    text = "NI AB 12 34 5 C, build 20260115 " + "x" * 20 + " v 1.2.3 " + "y" * 20 + " 10.0.0.1"
    assert found(UK_NINO, text) == []
    assert found(IPV4, text) == ["10.0.0.1"]
    runs = digit_runs("ref 12 34 5 " + "z" * 20 + " 020 7946 0958")
    assert [run.values for run in runs] == [("020", "7946", "0958")]


def test_uk_nino_and_ipv4_are_looked_for_at_every_cluster() -> None:
    text = "NI AB 12 34 56 C, then JG103245D; hosts 10.0.0.1 and 10.0.0.2, 1.2.3.4"
    assert found(UK_NINO, text) == ["AB 12 34 56 C", "JG103245D"]
    assert found(IPV4, text) == ["10.0.0.1", "10.0.0.2", "1.2.3.4"]


@table(
    IPV4,
    ["192.168.1.20", "10.0.0.1", "8.8.8.8", "255.255.255.255"],
    ["256.1.1.1", "1.2.3", "01.02.03.04", "1.2.3.4.5", "10.0.19045.2364"],
)
def test_ipv4(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version 1.2.3.4 is out", []),
        ("build: 10.0.0.1", []),
        ("v1.2.3.4", []),
        ("server 10.0.0.1:8080", ["10.0.0.1"]),
        ("host 10.0.0.1.", ["10.0.0.1"]),
    ],
)
def test_ipv4_in_context(text: str, expected: list[str]) -> None:
    assert found(IPV4, text) == expected


@table(
    IPV6,
    [
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::1",
        "::ffff:192.0.2.1",
    ],
    ["10:30:45", "00:1A:2B:3C:4D:5E", "std::map", "::", "deadbeef::cafe", "a:b"],
)
def test_ipv6(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Re: note: at 10:30", []),
        ("Re: see std::map", []),  # prose colons are skipped before any expansion
        ("go .::1 now", ["::1"]),  # a leading dot is not part of the address
        ("[2001:db8::1]:443", ["2001:db8::1"]),
        ("from 2001:db8::1.", ["2001:db8::1"]),
        ("a 1:2:3:4:5:6:7:8 b", ["1:2:3:4:5:6:7:8"]),
        ("a 1:2:3:4:5:6:1.2.3.4 b", ["1:2:3:4:5:6:1.2.3.4"]),  # six colons, IPv4 tail
        (": see ::1", ["::1"]),  # a colon at the very start has nothing before it
    ],
)
def test_ipv6_in_context(text: str, expected: list[str]) -> None:
    assert found(IPV6, text) == expected


@table(
    US_SSN,
    ["123-45-6789", "078 05 1120", "219.09.9999"],
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45 6789",
        "123456789",
    ],
)
def test_us_ssn(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("my SSN is 123456789", ["123456789"]), ("order 123456789", []), ("+123-45-6789", [])],
)
def test_us_ssn_in_context(text: str, expected: list[str]) -> None:
    assert found(US_SSN, text) == expected


@table(
    UK_NINO,
    ["AB123456C", "AB 12 34 56 C", "ab 12 34 56 c", "JG-10-32-45-D"],
    ["QQ123456C", "DA123456A", "AO123456A", "GB123456A", "AB123456E", "AB12345C", "AB1234567C"],
)
def test_uk_nino(rec: Recognizer, value: str, expected: bool) -> None:
    check_value(rec, value, expected)


@pytest.mark.parametrize(
    ("digits", "ok"), [("4111111111111111", True), ("4111111111111112", False), ("0", True)]
)
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


def test_validators_reject_malformed_input() -> None:
    assert not card_ok("41111111111111x1")
    assert not iban_ok("GBXXWEST12345698765432")
    assert not iban_ok("GB82WEST1234569876543!")
    assert not nino_ok("AB12345")
    assert not nino_ok("1B123456A")
    assert ssn_ok("123", "45", "6789")


@pytest.mark.parametrize("rec", [r for recs in BUILTIN.values() for r in recs])
def test_every_recognizer_is_a_recognizer_and_validates(rec: Recognizer) -> None:
    assert isinstance(rec, Recognizer)
    assert rec.entity in BUILTIN
    assert rec.validate("nothing here") is False  # type: ignore[attr-defined]


def test_anchor_matches_what_its_plain_spelling_matches() -> None:
    # ANCHOR opens with a character set (fast to search); same matches as the plain form.
    import random
    import re

    from redaction.recognizers import ANCHOR

    plain = re.compile(r"[0-9@:]|(?i:dot)|(?i:at)[ \t]?[\])}>]")
    rng = random.Random(5)
    alphabet = "dotaDOTA@:09 \t])}>x.\u212a\u017f<"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        assert [m.span() for m in ANCHOR.finditer(text)] == [
            m.span() for m in plain.finditer(text)
        ], text


def _ipv6_reference(text: str) -> list[tuple[int, int]]:
    """Every colon's run of hex digits, colons and dots (full stops trimmed), checked
    whole: what `Ipv6Recognizer.find` finds while skipping most colons."""
    import string

    from redaction.validators import ip_ok

    hex_colon = set("0123456789abcdefABCDEF:.")
    word = set(string.ascii_letters + string.digits + "_")
    spans: list[tuple[int, int]] = []
    for colon in (i for i, ch in enumerate(text) if ch == ":"):
        if spans and colon < spans[-1][1]:
            continue
        start, end = colon, colon + 1
        while start > 0 and text[start - 1] in hex_colon:
            start -= 1
        while end < len(text) and text[end] in hex_colon:
            end += 1
        while end > colon + 1 and text[end - 1] == ".":
            end -= 1
        while start < colon and text[start] == ".":
            start += 1
        token = text[start:end]
        if (
            token.count(":") >= 2
            and token.strip(":.")
            and (start == 0 or text[start - 1] not in word)
            and (end == len(text) or text[end] not in word)
            and ip_ok(token)
        ):
            spans.append((start, end))
    return spans


def test_ipv6_skipping_colons_finds_what_checking_every_colon_finds() -> None:
    import random

    rng = random.Random(11)
    pieces = ["1", "ab", "fe80", "cafe:", "deadbeefcafe", ":", "::", ".", "1.2.3.4", " ", "x", "é"]
    pieces += ["cafe:cafe:cafe:cafe:", "cafe:cafe:cafe:cafe"]  # hextets of four: colons 5 apart
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert list(IPV6.find(text)) == _ipv6_reference(text), text


def test_spelled_forms_are_looked_for_in_the_mask() -> None:
    import random
    import re

    from redaction.recognizers import _may_be_spelled

    plain = re.compile(r"(?i:dot)|(?i:at)[ \t]?[\])}>]")
    rng = random.Random(3)
    alphabet = "dotaDOTA \t])}>x\u212a\u0130\n0"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        # (ASCII only: the mask reads a non-ASCII character as no letter)
        expected = plain.search(text.encode("ascii", "replace").decode()) is not None
        assert _may_be_spelled(text) is expected, text
