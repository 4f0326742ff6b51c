"""Vault stability, persistence and restore; StreamRestorer across chunk boundaries."""

from __future__ import annotations

import pytest

from redaction import StreamRestorer, Vault
from redaction.vault import canonical


def test_same_value_same_placeholder_and_numbers_per_entity() -> None:
    vault = Vault()
    assert not vault.dirty
    assert vault.placeholder("EMAIL", "Ana@Example.com") == "<EMAIL_1>"
    assert vault.placeholder("EMAIL", "ana@example.com") == "<EMAIL_1>"
    assert vault.placeholder("EMAIL", "bo@example.com") == "<EMAIL_2>"
    assert vault.placeholder("PHONE", "+44 20 7946 0958") == "<PHONE_1>"
    assert vault.placeholder("PHONE", "+44 (0)20 7946-0958") == "<PHONE_1>"
    assert vault.dirty and len(vault) == 3
    assert vault.entries["<EMAIL_1>"] == "Ana@Example.com"  # the value as first written


@pytest.mark.parametrize(
    ("entity", "a", "b"),
    [
        ("EMAIL", "ana [at] example [dot] com", "ana@example.com"),
        ("EMAIL", "ana at example dot com", "ANA@EXAMPLE.COM"),
        ("PHONE", "0044 20 7946 0958", "+442079460958"),
        ("CREDIT_CARD", "4111-1111-1111-1111", "\uff14111111111111111"),
        ("US_SSN", "123 45 6789", "123-45-6789"),
        ("IBAN", "gb82 west 1234 5698 7654 32", "GB82WEST12345698765432"),
        ("UK_NINO", "ab 12 34 56 c", "AB123456C"),
        ("IP_ADDRESS", "2001:0DB8:0000::1", "2001:db8::1"),
        ("PERSON_NAME", "Ana  Lima", "ana lima"),
    ],
)
def test_canonical_keys(entity: str, a: str, b: str) -> None:
    assert canonical(entity, a) == canonical(entity, b)


def test_canonical_keys_keep_different_values_apart() -> None:
    assert canonical("PHONE", "020 7946 0958") != canonical("PHONE", "+44 20 7946 0958")
    assert canonical("IP_ADDRESS", "not an ip") == "not an ip"


def test_entity_names_are_checked() -> None:
    with pytest.raises(ValueError, match="upper-case"):
        Vault().placeholder("email", "a@b.co")


def test_json_round_trip_keeps_numbering_and_lookup() -> None:
    vault = Vault()
    vault.placeholder("EMAIL", "a@b.co")
    vault.placeholder("EMAIL", "c@d.co")
    vault.placeholder("IBAN", "GB82WEST12345698765432")
    again = Vault.from_json(vault.to_json())
    assert not again.dirty
    assert dict(again.entries) == dict(vault.entries)
    assert again.placeholder("EMAIL", "C@D.CO") == "<EMAIL_2>"
    assert not again.dirty
    assert again.placeholder("EMAIL", "e@f.co") == "<EMAIL_3>"
    assert again.dirty


def test_entries_with_gaps_continue_after_the_highest_number() -> None:
    vault = Vault({"<EMAIL_7>": "a@b.co", "<EMAIL_2>": "x@y.co"})
    assert vault.placeholder("EMAIL", "new@b.co") == "<EMAIL_8>"
    assert vault.placeholder("EMAIL", "A@B.CO") == "<EMAIL_7>"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"version": 2, "entries": {}}',
        b'{"version": 1}',
        b'{"version": 1, "entries": {"EMAIL_1": "a@b.co"}}',
        b'{"version": 1, "entries": {"<EMAIL_1>": 3}}',
        b'{"version": 1, "entries": {"<EMAIL_0>": "a@b.co"}}',
    ],
)
def test_from_json_rejects_anything_else(data: bytes) -> None:
    with pytest.raises(ValueError):
        Vault.from_json(data)


def test_restore_only_puts_back_values_the_vault_holds() -> None:
    vault = Vault({"<EMAIL_1>": "a@b.co"})
    assert vault.restore("to <EMAIL_1>, <EMAIL_9>, <PHONE_1>, <EMAIL_1") == (
        "to a@b.co, <EMAIL_9>, <PHONE_1>, <EMAIL_1"
    )
    assert vault.restore("no placeholders") == "no placeholders"
    assert Vault().restore("<EMAIL_1>") == "<EMAIL_1>"


def test_restore_does_not_expand_a_restored_value_again() -> None:
    vault = Vault({"<EMAIL_1>": "<EMAIL_2>", "<EMAIL_2>": "secret@b.co"})
    assert vault.restore("<EMAIL_1>") == "<EMAIL_2>"


def test_repr_shows_no_values() -> None:
    vault = Vault({"<EMAIL_1>": "secret@b.co"})
    assert "secret" not in repr(vault) and "1 entries" in repr(vault)
    assert "<EMAIL_1>" in vault and "<EMAIL_2>" not in vault


VAULT = Vault({"<EMAIL_1>": "ana@example.com", "<IP_ADDRESS_12>": "10.0.0.1"})
REPLY = "Hi <EMAIL_1>, your IP <IP_ADDRESS_12> < 3 <EMAIL_9> <EMAIL_1"


@pytest.mark.parametrize("cut", range(len(REPLY) + 1))
def test_stream_restorer_handles_a_split_at_every_position(cut: int) -> None:
    restorer = StreamRestorer(VAULT)
    out = restorer.feed(REPLY[:cut]) + restorer.feed(REPLY[cut:]) + restorer.flush()
    assert out == VAULT.restore(REPLY)


def test_stream_restorer_one_character_at_a_time_and_holds_only_a_prefix() -> None:
    restorer = StreamRestorer(VAULT)
    pieces = [restorer.feed(ch) for ch in REPLY]
    assert "".join(pieces) + restorer.flush() == VAULT.restore(REPLY)
    restorer = StreamRestorer(VAULT)
    assert restorer.feed("see <IP_ADD") == "see "
    assert restorer.feed("RESS_12> ok") == "10.0.0.1 ok"
    assert restorer.feed("x <EMAIL_1> <") == "x ana@example.com "
    assert restorer.feed("b") == "<b"  # no placeholder starts "<b": nothing held
    assert restorer.feed("<EMAIL_1") == ""  # could still be <EMAIL_1>
    assert restorer.flush() == "<EMAIL_1"


def test_stream_restorer_with_an_empty_vault_holds_nothing() -> None:
    restorer = StreamRestorer(Vault())
    assert restorer.feed("<EMA") == "<EMA"
    assert restorer.flush() == ""


def test_copy_is_independent_and_clean() -> None:
    original = Vault()
    ph = original.placeholder("EMAIL", "a@x.example")
    twin = original.copy()
    assert not twin.dirty and twin.restore(ph) == "a@x.example"
    assert twin.placeholder("EMAIL", "A@X.example") == ph  # the same normalised key
    new = twin.placeholder("EMAIL", "b@y.example")
    assert twin.dirty and new == "<EMAIL_2>"
    assert original.restore(new) == new  # the original did not learn it
    assert original.placeholder("EMAIL", "c@z.example") == "<EMAIL_2>"
