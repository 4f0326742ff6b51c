"""Properties of redaction over arbitrary text (hypothesis).

What is guaranteed, precisely:
- `redact` never raises on any string (a detector bug would surface as RedactionError,
  which these properties would report as a failure);
- redacting the output again with the same vault changes nothing (a fixed point);
- `vault.restore(redact(x).text) == strip_invisible(x)` for a fresh vault whenever x
  contains no placeholder-shaped text ("<EMAIL_1>") and every value that got one
  placeholder was written the same way each time in x (the vault restores the first
  spelling, so "A@x.co ... a@x.co" comes back as "A@x.co ... A@x.co"). NFKC changes
  inside a value are preserved: the vault holds the value as written.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from redaction import ENTITIES, RedactionError, Redactor, Vault, strip_invisible
from redaction.vault import PLACEHOLDER

REDACTOR = Redactor(ENTITIES)


class Nothing:
    entity = "NOTHING"

    def find(self, text: str) -> list[tuple[int, int]]:
        return []


# An extra recognizer (of unknown reach) makes every confirming scan read the whole text.
FULL_SCANS = Redactor(ENTITIES, extra=[Nothing()])

FRAGMENTS = [
    "ana@example.com",
    "ANA@example.com",
    "bo [at] example [dot] org",
    "4111 1111 1111 1111",
    "4111111111111111",
    "5555-5555-5555-4444",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "+44 20 7946 0958",
    "(202) 555-0173",
    "07700 900123",
    "123-45-6789",
    "AB 12 34 56 C",
    "10.0.0.1",
    "2001:db8::1",
    "ORD-2026-004512",
    "2026-01-15",
    "$1,299.00",
    "v2.4.1",
    "SSN",
    "call",
    "version",
    "firmware",
    "PHONE",
    "3500820489",
    "219099999",
    "1:2:3:4:5:6:1.2.3.4",
]
PIECES = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(max_size=6),
    st.sampled_from(
        [*" \n\t-.:/()@<>_+#", "\u200b", "\uff14", "\u2013", "\U000e0041", "\ufe0f", "at", "dot"]
    ),
    st.sampled_from([". ", ". A", ".\n", "\ufb01", "\u2488", "\u00bd"]),  # cuts, expansions
    st.from_regex(r"[0-9 ]{1,20}", fullmatch=True),
)
TEXTS = st.one_of(st.text(), st.lists(PIECES, max_size=30).map("".join))


class RecordingVault(Vault):
    def __init__(self) -> None:
        super().__init__()
        self.spellings: dict[str, set[str]] = defaultdict(set)

    def placeholder(self, entity: str, value: str) -> str:
        ph = super().placeholder(entity, value)
        self.spellings[ph].add(value)
        return ph


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_redact_never_raises_and_is_idempotent(text: str) -> None:
    vault = Vault()
    once = REDACTOR.redact(text, vault)
    twice = REDACTOR.redact(once.text, vault)
    assert twice.text == once.text
    assert dict(twice.counts) == {}
    assert sum(once.counts.values()) >= len(vault)


@settings(max_examples=600, deadline=None)
@given(TEXTS)
def test_scans_near_new_placeholders_find_what_full_scans_find(text: str) -> None:
    try:
        full = FULL_SCANS.redact(text, Vault())
    except RedactionError:  # a chain of reveals longer than the whole-text round limit
        assume(False)
    assert REDACTOR.redact(text, Vault()) == full


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_restore_gives_back_the_text_without_invisible_characters(text: str) -> None:
    assume(PLACEHOLDER.search(text) is None)
    vault = RecordingVault()
    out = REDACTOR.redact(text, vault)
    assume(all(len(values) == 1 for values in vault.spellings.values()))
    assert vault.restore(out.text) == strip_invisible(text)


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_output_has_no_invisible_characters(text: str) -> None:
    out = REDACTOR.redact(text, Vault()).text
    assert strip_invisible(out) == out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6))
def test_placeholders_are_stable_across_calls(values: list[str]) -> None:
    vault = Vault()
    first = REDACTOR.redact(" | ".join(values), vault).text
    again = REDACTOR.redact(" | ".join(values), Vault.from_json(vault.to_json())).text
    assert first == again


MEMO = Redactor(ENTITIES)
NO_MEMO = Redactor(ENTITIES, remember_clean=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_the_memo_never_changes_an_answer(texts: list[str], rnd: object) -> None:
    """Conversations resent in turns, in fresh and in shared vaults, in any order: the
    memo's answers, counts and vault contents are those of a redactor without one."""
    turns = [texts[: i + 1] for i in range(len(texts))]
    shuffled = list(texts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for vaults in ((Vault(), Vault()), None):
        for turn in [*turns, shuffled, texts]:
            a, b = vaults if vaults is not None else (Vault(), Vault())
            for text in turn:
                got, want = MEMO.redact(text, a), NO_MEMO.redact(text, b)
                assert (got.text, dict(got.counts)) == (want.text, dict(want.counts))
            assert a.entries == b.entries and a.dirty == b.dirty
