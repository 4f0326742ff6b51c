"""The Redactor: entity selection, evasion, offsets, overlaps, placeholders, failures."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from redaction import (
    ENTITIES,
    Recognizer,
    RedactionError,
    Redactor,
    UnknownEntityError,
    Vault,
    strip_invisible,
)
from redaction.redactor import _cut_after, _cut_before

ALL = Redactor(ENTITIES)


def redact(text: str, vault: Vault | None = None) -> str:
    return ALL.redact(text, vault if vault is not None else Vault()).text


def test_entities_are_the_seven_of_issue_3() -> None:
    assert ENTITIES == {"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "UK_NINO"}


def test_unknown_entity_is_refused() -> None:
    with pytest.raises(UnknownEntityError, match="PASSPORT"):
        Redactor(["EMAIL", "PASSPORT"])


def test_only_selected_entities_are_redacted() -> None:
    out = Redactor(["EMAIL"]).redact("a@b.co 4111 1111 1111 1111", Vault())
    assert out.text == "<EMAIL_1> 4111 1111 1111 1111"
    assert dict(out.counts) == {"EMAIL": 1}


def test_counts_and_placeholders_per_entity() -> None:
    vault = Vault()
    out = ALL.redact(
        "Ana ana@example.com, card 4111 1111 1111 1111, again ANA@example.com, "
        "IBAN GB82 WEST 1234 5698 7654 32, from 10.0.0.1 and 2001:db8::1, "
        "SSN 123-45-6789, NINO AB 12 34 56 C, phone +44 20 7946 0958",
        vault,
    )
    assert out.text == (
        "Ana <EMAIL_1>, card <CREDIT_CARD_1>, again <EMAIL_1>, IBAN <IBAN_1>, "
        "from <IP_ADDRESS_1> and <IP_ADDRESS_2>, SSN <US_SSN_1>, NINO <UK_NINO_1>, "
        "phone <PHONE_1>"
    )
    assert dict(out.counts) == {
        "EMAIL": 2,
        "CREDIT_CARD": 1,
        "IBAN": 1,
        "IP_ADDRESS": 2,
        "US_SSN": 1,
        "UK_NINO": 1,
        "PHONE": 1,
    }
    assert len(vault) == 8


def test_no_hits_returns_text_and_empty_counts() -> None:
    out = ALL.redact("Order ORD-2026-004512 shipped on 2026-01-15 for $129.99 (v2.4.1)", Vault())
    assert out.text == "Order ORD-2026-004512 shipped on 2026-01-15 for $129.99 (v2.4.1)"
    assert dict(out.counts) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ana\u200b@exa\u2060mple.com now", "mail <EMAIL_1> now"),
        (
            "card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 1111 1111",
            "card <CREDIT_CARD_1>",
        ),
        ("\uff41\uff4e\uff41\uff20example.com", "<EMAIL_1>"),
        ("ssn 123\u201345\u201367\u200d89", "ssn <US_SSN_1>"),
        ("card 4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1", "card <CREDIT_CARD_1>"),
        ("ana [at] example [dot] com", "<EMAIL_1>"),
        ("ana (at) example dot com", "<EMAIL_1>"),
        ("hidden\U000e0041\U000e0042 text\u202e", "hidden text"),
        ("IBAN \uff27\uff22\uff18\uff12 WEST 1234 5698 7654 32", "IBAN <IBAN_1>"),
        (
            "call \u0660\u0667\u0667\u0660\u0660 \u0669\u0660\u0660\u0661\u0662\u0663",
            "call <PHONE_1>",
        ),
    ],
)
def test_evasion(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_replacement_keeps_the_original_text_around_the_span() -> None:
    # Non-ASCII text before the value must not shift the replaced span.
    out = redact("Grüße \u200b\ufb01 — 电话 +44\u00a020 7946 0958 — merci")
    assert out == "Grüße \ufb01 — 电话 <PHONE_1> — merci"


def test_vault_holds_the_written_value_without_invisible_characters() -> None:
    vault = Vault()
    redact("x \uff14111 1111 1111 1111\u200b y", vault)
    assert dict(vault.entries) == {"<CREDIT_CARD_1>": "\uff14111 1111 1111 1111"}


def test_overlaps_resolve_to_the_longest_span() -> None:
    # The IBAN contains a run that could also read as a phone number.
    assert redact("DE89 3704 0044 0532 0130 00") == "<IBAN_1>"


def test_placeholders_are_never_detected() -> None:
    vault = Vault()
    once = ALL.redact("mail a@b.co, card 4111111111111111, ip ::1", vault).text
    assert ALL.redact(once, vault).text == once
    assert redact("<EMAIL_9> <PHONE_12> <IP_ADDRESS_3>") == "<EMAIL_9> <PHONE_12> <IP_ADDRESS_3>"


def test_redaction_reaches_a_fixed_point() -> None:
    # In one pass the card is glued to the address; once the address is a placeholder
    # the card stands alone, so the second pass takes it too.
    vault = Vault()
    out = ALL.redact("a@b.co4111111111111111", vault)
    assert out.text == ALL.redact(out.text, vault).text


class Fixed:
    def __init__(self, entity: str, spans: Iterable[tuple[int, int]]) -> None:
        self.entity = entity
        self._spans = list(spans)

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        return [(s, e) for s, e in self._spans if e <= len(text)]


class Broken:
    entity = "NAME"

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        raise KeyError("bug")


def test_extra_recognizers_are_run_and_named() -> None:
    names = Fixed("PERSON_NAME", [(3, 6)])
    assert isinstance(names, Recognizer)
    redactor = Redactor(["EMAIL"], extra=[names])
    assert redactor.entities == {"EMAIL", "PERSON_NAME"}
    out = redactor.redact("Hi Ana, a@b.co", Vault())
    assert out.text == "Hi <PERSON_NAME_1>, <EMAIL_1>"


def test_extra_recognizer_with_a_bad_entity_name_is_refused() -> None:
    with pytest.raises(UnknownEntityError):
        Redactor([], extra=[Fixed("person name", [])])


def test_a_failing_detector_fails_closed() -> None:
    with pytest.raises(RedactionError, match="KeyError"):
        Redactor([], extra=[Broken()]).redact("text", Vault())
    with pytest.raises(RedactionError, match="KeyError"):
        Redactor([], extra=[Broken()]).detect("text")


def test_detect_reports_entities_at_original_offsets() -> None:
    text = "\u200bmail a@b.co, card 4111 1111 1111 1111"
    assert ALL.detect(text) == [("EMAIL", 6, 12), ("CREDIT_CARD", 19, 38)]


@pytest.mark.parametrize("span", [(5, 3), (-1, 2), (0, 99)])
def test_an_invalid_span_fails_closed(span: tuple[int, int]) -> None:
    class Bad:
        entity = "NAME"

        def find(self, text: str) -> Iterable[tuple[int, int]]:
            return [span]

    with pytest.raises(RedactionError, match="invalid span"):
        Redactor([], extra=[Bad()]).redact("some text", Vault())
    with pytest.raises(RedactionError, match="invalid span"):
        Redactor([], extra=[Bad()]).detect("some text")


def test_a_detector_that_never_settles_fails_closed() -> None:
    class OneAtATime:  # finds only the first lower-case letter each pass
        entity = "LETTER"

        def find(self, text: str) -> Iterable[tuple[int, int]]:
            first = next((i for i, ch in enumerate(text) if ch in "abcdefghij"), None)
            return [] if first is None else [(first, first + 1)]

    with pytest.raises(RedactionError, match="fixed point"):
        Redactor([], extra=[OneAtATime()]).redact("abcdefghij", Vault())


def test_digit_regions_skip_text_with_too_few_digits() -> None:
    # Seven digits: enough for a phone, not for a card; the card recognizer never runs.
    assert Redactor(["CREDIT_CARD"]).redact("call 555 0100 ok", Vault()).text == "call 555 0100 ok"
    assert Redactor(["PHONE"]).redact("\u00e9 020 7946 0958", Vault()).text == "\u00e9 <PHONE_1>"


def test_regions_are_merged_and_found_far_apart() -> None:
    filler = " word" * 40
    text = f"4111 1111 1111 1111{filler} 5555 5555 5555 4444 and 123-45-6789 here"
    assert redact(text) == f"<CREDIT_CARD_1>{filler} <CREDIT_CARD_2> and <US_SSN_1> here"


def test_restore_round_trip_with_invisible_characters() -> None:
    vault = Vault()
    text = "Hi\u200b, ana@example.com\u2060 called from +44 20 7946 0958"
    assert vault.restore(ALL.redact(text, vault).text) == strip_invisible(text)


class Nothing:
    """An extra recognizer that finds nothing: its presence makes every scan read all."""

    entity = "NOTHING"

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        return ()


FULL = Redactor(ENTITIES, extra=[Nothing()])


@pytest.mark.parametrize(
    "text",
    [
        # The placeholder is a phone word for the bare number after it (a second round).
        "+44 20 7946 0958 3500820489",
        # ... and an SSN word for nine bare digits.
        "078-05-1120 219099999",
        # A replaced e-mail was the version word that hid an IP on the next line.
        "a@b.firmware\n10.0.0.1",
        # Sentence breaks on both sides, one without a letter after it (no cut there).
        "Hello there. Mail a@b.co. 12 x. Call +44 20 7946 0958 3500820489. Bye now.",
        # Two placeholders close together share one stretch; a far one gets its own.
        "a@b.co c@d.co" + " filler." * 30 + " e@f.co",
    ],
)
def test_confirming_scans_near_placeholders_equal_full_scans(text: str) -> None:
    assert redact(text) == FULL.redact(text, Vault()).text


def test_confirming_scan_finds_what_the_new_neighbour_reveals() -> None:
    assert redact("+44 20 7946 0958 3500820489") == "<PHONE_1> <PHONE_2>"
    assert redact("078-05-1120 219099999") == "<US_SSN_1> <US_SSN_2>"
    assert redact("a@b.firmware\n10.0.0.1") == "<EMAIL_1>\n<IP_ADDRESS_1>"


def test_confirming_scan_ignores_what_only_its_lookback_shows() -> None:
    # The scan after the newline starts 24 characters back, inside "1202 555 0173";
    # its tail "202 555 0173" looks like a US number there, but the line does not hold one.
    text = "ref 1202 555 0173 is not one\n  a@b.co"
    assert redact(text) == "ref 1202 555 0173 is not one\n  <EMAIL_1>"
    assert FULL.redact(text, Vault()).text == redact(text)


def test_text_still_changed_by_normalising_is_confirmed_near_every_placeholder() -> None:
    # The fullwidth digits stay in the output, so its view is not the text itself.
    text = "\uff14\uff11\uff11\uff11 <EMAIL_7> a@b.co"
    assert redact(text) == "\uff14\uff11\uff11\uff11 <EMAIL_7> <EMAIL_1>"


@pytest.mark.parametrize("lead", ["", "\uff14 "])
def test_a_chain_of_numbers_revealed_one_by_one_is_followed_to_its_end(lead: str) -> None:
    # Each "+10000000" is a phone number only once the one before it is a placeholder
    # (before that it is the tail of an identifier): twelve rounds, more than the eight
    # whole-text rounds allowed.
    text = lead + "a@b.co+10000000" + "+10000000" * 11
    assert redact(text) == lead + "<EMAIL_1>" + "<PHONE_1>" * 12
    with pytest.raises(RedactionError, match="fixed point"):
        FULL.redact(text, Vault())


def test_invisible_characters_are_dropped_with_or_without_findings() -> None:
    assert redact("no\u200b pii here") == "no pii here"
    assert redact("mail\u200b a@b.co") == "mail <EMAIL_1>"
    text = "plain ascii"
    assert ALL.redact(text, Vault()).text is text


def test_numbers_far_apart_inside_long_words_are_found() -> None:
    text = "4111 1111 1111 1111 " + "x" * 120 + " 5555 5555 5555 4444"
    assert redact(text) == "<CREDIT_CARD_1> " + "x" * 120 + " <CREDIT_CARD_2>"


def test_ipv6_digits_are_left_out_and_numbers_next_to_it_still_found() -> None:
    # The inside of an address is left out of the digit mask; what stands around it
    # (an IPv4 tail, a phone right after it) is found as before.
    assert redact("from 2001:db8:1234:5678::1 call 020 7946 0958") == (
        "from <IP_ADDRESS_1> call <PHONE_1>"
    )
    assert redact("at 1:2:3:4:5:6:1.2.3.4 now") == "at <IP_ADDRESS_1> now"
    assert redact("not an address 2001:db8:1234:5678:9 4111 1111 1111 1111") == (
        "not an address 2001:db8:1234:5678:9 <CREDIT_CARD_1>"
    )
    only_numbers = Redactor(["CREDIT_CARD"])
    text = "a 2001:db8::4111:1111:1111:1111 b 4111 1111 1111 1111"
    assert only_numbers.redact(text, Vault()).text == (
        "a 2001:db8::4111:1111:1111:1111 b <CREDIT_CARD_1>"
    )


def _cut_before_reference(text: str, pos: int) -> int:
    line = text.rfind("\n", 0, pos) + 1
    dot = text.rfind(". ", line, pos)
    while dot != -1:
        if dot + 2 < len(text) and text[dot + 2].isascii() and text[dot + 2].isalpha():
            return dot + 2
        dot = text.rfind(". ", line, dot + 1)
    return line


def _cut_after_reference(text: str, pos: int) -> int:
    newline = text.find("\n", max(0, pos - 1))
    limit = len(text) if newline == -1 else newline + 1
    dot = text.find(". ", max(0, pos - 2), limit)
    while dot != -1:
        if dot + 2 < len(text) and text[dot + 2].isascii() and text[dot + 2].isalpha():
            return dot + 2
        dot = text.find(". ", dot + 1, limit)
    return limit


def test_cuts_are_the_nearest_line_or_sentence_break() -> None:
    pieces = ["a", "A", ". ", ".", " ", "\n", "1", "\u00e9"]
    texts = level = [""]
    for _ in range(5):  # every text of up to five pieces
        level = [t + p for t in level for p in pieces]
        texts = texts + level
    for text in texts:
        for pos in range(len(text) + 1):
            assert _cut_before(text, pos) == _cut_before_reference(text, pos), (text, pos)
            assert _cut_after(text, pos) == _cut_after_reference(text, pos), (text, pos)


def test_clean_texts_are_remembered_and_never_leak_between_vaults() -> None:
    redactor = Redactor(["EMAIL", "PHONE"])
    text = "Hello, my order\u200b is late."
    first = redactor.redact(text, Vault())
    assert first.text == "Hello, my order is late." and first.counts == {}
    assert text in redactor._clean
    again = redactor.redact(text, Vault())
    assert again.text == first.text and again.counts == {}
    # a text with a hit is never memoised: its output depends on the vault
    vault_a, vault_b = Vault(), Vault()
    vault_b.placeholder("EMAIL", "someone@else.example")
    hit = "mail me at a@b.example"
    assert redactor.redact(hit, vault_a).text == "mail me at <EMAIL_1>"
    assert redactor.redact(hit, vault_b).text == "mail me at <EMAIL_2>"
    assert hit not in redactor._clean


def test_the_clean_memo_is_bounded() -> None:
    from redaction import redactor as module

    redactor = Redactor(["EMAIL"])
    for i in range(module._CLEAN_ENTRIES + 10):
        redactor.redact(f"plain text number {i}", Vault())
    assert len(redactor._clean) == module._CLEAN_ENTRIES
    long = "x" * (module._CLEAN_TEXT_MAX + 1)
    redactor.redact(long, Vault())
    assert long not in redactor._clean


def test_the_memo_can_be_switched_off() -> None:
    redactor = Redactor(["EMAIL"], remember_clean=False)
    assert redactor.redact("nothing here", Vault()).text == "nothing here"
    assert redactor._clean == {}


def _fresh(redactor: Redactor, texts: list[str], vault: Vault) -> list[tuple[str, dict[str, int]]]:
    return [(r.text, dict(r.counts)) for r in (redactor.redact(t, vault) for t in texts)]


def test_a_resent_history_is_replayed_from_the_memo_with_the_same_answer() -> None:
    history = [
        "Mail me at ana@example.com or ring 07700 900123.",
        "Card 4111 1111 1111 1111 was charged twice; my other address is bo@example.org.",
        "No personal data in this one.",
    ]
    memo, reference = (
        Redactor(["EMAIL", "PHONE", "CREDIT_CARD"]),
        Redactor(["EMAIL", "PHONE", "CREDIT_CARD"], remember_clean=False),
    )
    case_a, case_b = Vault(), Vault()
    turns = [history[:1], history[:2], history]  # each turn resends the one before
    for turn in turns:
        assert _fresh(memo, turn, case_a) == _fresh(reference, turn, case_b)
        assert case_a.entries == case_b.entries
    assert len(memo._seen) == 2  # the two texts that had findings

    # a hit is answered without scanning: a detector that would now fail is not reached
    def broken(view: object) -> list[object]:
        raise AssertionError("scanned")

    memo._detect = broken  # type: ignore[method-assign]
    assert memo.redact(history[1], case_a).text == reference.redact(history[1], case_b).text
    # the memo holds no text and no value, only offsets, placeholders and the output
    held = repr(memo._seen)
    for value in ("ana@example.com", "07700 900123", "4111", "bo@example.org"):
        assert value not in held
    assert all(text not in held for text in history)


def test_a_memo_hit_in_another_vault_numbers_as_a_fresh_scan_would() -> None:
    text = "Write to ana@example.com, or to bo@example.org."
    memo = Redactor(["EMAIL"])
    reference = Redactor(["EMAIL"], remember_clean=False)
    assert memo.redact(text, Vault()).text == "Write to <EMAIL_1>, or to <EMAIL_2>."
    # another case whose vault numbers these values otherwise: the replay stops at the
    # first placeholder that differs and the text is scanned, from what the replay left
    for prior in ([], ["bo@example.org"], ["zed@example.net"], ["ana@example.com"]):
        vault_a, vault_b = Vault(), Vault()
        for value in prior:
            vault_a.placeholder("EMAIL", value)
            vault_b.placeholder("EMAIL", value)
        got, want = memo.redact(text, vault_a), reference.redact(text, vault_b)
        assert (got.text, dict(got.counts)) == (want.text, dict(want.counts)), prior
        assert vault_a.entries == vault_b.entries and vault_a.dirty == vault_b.dirty


def test_the_replay_memo_is_bounded_and_keeps_only_one_round_redactions() -> None:
    from redaction import redactor as module

    redactor = Redactor(["EMAIL", "PHONE"])
    for i in range(module._SEEN_ENTRIES + 10):
        redactor.redact(f"note {i}: a{i}@example.com", Vault())
    assert len(redactor._seen) == module._SEEN_ENTRIES
    redactor = Redactor(["EMAIL"])
    redactor.redact("x" * module._CLEAN_TEXT_MAX + " a@example.com", Vault())
    redactor.redact("Ana\u200b@example.com", Vault())  # the view is not the text itself
    assert redactor._seen == {}
    off = Redactor(["EMAIL"], remember_clean=False)
    off.redact("a@example.com", Vault())
    assert off._seen == {}
