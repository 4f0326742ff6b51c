"""The pseudonym map of one case, and restoring placeholders (also in streams).

    vault = Vault()
    vault.placeholder("EMAIL", "Ana@Example.com")   # "<EMAIL_1>"
    vault.placeholder("EMAIL", "ana@example.com")   # "<EMAIL_1>" again: same normalised value
    vault.restore("Hi <EMAIL_1>, <EMAIL_9>")         # "Hi Ana@Example.com, <EMAIL_9>"
    blob = vault.to_json()                           # the gateway encrypts this at rest

A vault maps placeholders to the value as first written (invisible characters removed).
Values are looked up by a normalised key per entity (case-folded e-mail, digits of a
card, expanded IPv6, ...), so one value spelled two ways keeps one placeholder.
Restoring replaces only placeholders the vault holds, in one pass: a restored value is
never scanned again, and an unknown placeholder stays as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType

from .text import normalise_value, strip_invisible
from .validators import ip_key

__all__ = ["PLACEHOLDER", "StreamRestorer", "Vault", "canonical"]

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_([1-9][0-9]*)>")
_ENTITY_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_SPELLED_AT = re.compile(r"\s*[\[({<]\s*(?i:at)\s*[\])}>]\s*|\s+(?i:at)\s+")
_SPELLED_DOT = re.compile(r"\s*[\[({<]\s*(?i:dot)\s*[\])}>]\s*|\s+(?i:dot)\s+")
_NON_DIGITS = re.compile(r"[^0-9]")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")
_FORMAT_VERSION = 1
# Entity names `placeholder` has checked already (a few per process: the recognizers').
_CHECKED_NAMES: set[str] = set()


def canonical(entity: str, value: str) -> str:
    """The key two spellings of one value share: how the vault decides "same value"."""
    text = (value if value.isascii() else normalise_value(value)).strip()
    if entity == "EMAIL":
        if "@" not in text:
            text = _SPELLED_AT.sub("@", text, count=1)
        local, _, domain = text.partition("@")
        return f"{local}@{_SPELLED_DOT.sub('.', domain)}".replace(" ", "").casefold()
    if entity == "PHONE":
        international = text.startswith("+") or text.startswith("00")
        if international and "(0)" in text:
            text = text.replace("(0)", "", 1)
        digits = _NON_DIGITS.sub("", text)
        if text.startswith("00"):
            digits = digits[2:]
        return "+" + digits if international else digits
    if entity in ("CREDIT_CARD", "US_SSN"):
        return _NON_DIGITS.sub("", text)
    if entity in ("IBAN", "UK_NINO"):
        return _NON_ALNUM.sub("", text).upper()
    if entity == "IP_ADDRESS":
        key = ip_key(text)
        return text.lower() if key is None else key
    return " ".join(text.split()).casefold()


class Vault:
    """Placeholder -> original value for one case (or one request without a case id)."""

    __slots__ = ("_by_key", "_counters", "_dirty", "_entries")

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, str] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._counters: dict[str, int] = {}
        self._dirty = False
        if entries:
            parsed = []
            for ph, value in entries.items():
                m = PLACEHOLDER.fullmatch(ph) if isinstance(ph, str) else None
                if m is None or not isinstance(value, str):
                    raise ValueError("vault entries must map '<ENTITY_N>' strings to strings")
                parsed.append((m.group(1), int(m.group(2)), ph, value))
            for entity, number, ph, value in sorted(parsed):
                self._entries[ph] = value
                self._by_key.setdefault((entity, canonical(entity, value)), ph)
                self._counters[entity] = max(self._counters.get(entity, 0), number)

    def copy(self) -> Vault:
        """An independent copy, not dirty (cheap: no entry is parsed or normalised again)."""
        other = Vault()
        other._entries = dict(self._entries)
        other._by_key = dict(self._by_key)
        other._counters = dict(self._counters)
        return other

    def placeholder(self, entity: str, value: str) -> str:
        """The placeholder of `value`, adding `<ENTITY_N>` with the next N if it is new."""
        if entity not in _CHECKED_NAMES:
            if _ENTITY_NAME.fullmatch(entity) is None:
                raise ValueError(f"entity names are upper-case identifiers, got {entity!r}")
            if len(_CHECKED_NAMES) < 256:
                _CHECKED_NAMES.add(entity)
        key = (entity, canonical(entity, value))
        found = self._by_key.get(key)
        if found is not None:
            return found
        number = self._counters.get(entity, 0) + 1
        ph = f"<{entity}_{number}>"
        self._counters[entity] = number
        self._entries[ph] = strip_invisible(value)
        self._by_key[key] = ph
        self._dirty = True
        return ph

    def restore(self, text: str) -> str:
        """Put back the values of the placeholders this vault holds; leave the rest."""
        if not self._entries or "<" not in text:
            return text
        entries = self._entries
        return PLACEHOLDER.sub(lambda m: entries.get(m.group(), m.group()), text)

    @property
    def entries(self) -> Mapping[str, str]:
        return MappingProxyType(self._entries)

    @property
    def dirty(self) -> bool:
        """True once `placeholder` added an entry after construction."""
        return self._dirty

    def to_json(self) -> bytes:
        doc = {"version": _FORMAT_VERSION, "entries": self._entries}
        return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Vault:
        """Rebuild a vault from `to_json` bytes; ValueError if they are not such bytes."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("vault data is not JSON") from exc
        if not isinstance(doc, dict) or doc.get("version") != _FORMAT_VERSION:
            raise ValueError("vault data has an unknown format version")
        entries = doc.get("entries")
        if not isinstance(entries, dict):
            raise ValueError("vault data has no entries object")
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, placeholder: object) -> bool:
        return placeholder in self._entries

    def __repr__(self) -> str:  # never the values: they are personal data
        return f"Vault(<{len(self._entries)} entries>)"


class StreamRestorer:
    """Restore placeholders in a streamed response whose chunks may split them.

    `feed` returns what is safe to emit now and holds back a tail that could still grow
    into one of the vault's placeholders (never longer than the longest of them).
    """

    __slots__ = ("_held", "_longest", "_vault")

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._held = ""
        self._longest = max(map(len, vault.entries), default=0)

    def feed(self, chunk: str) -> str:
        buffer = self._held + chunk
        self._held = ""
        if self._longest:
            cut = buffer.rfind("<")
            if cut != -1 and len(buffer) - cut < self._longest and ">" not in buffer[cut:]:
                tail = buffer[cut:]
                if any(ph.startswith(tail) for ph in self._vault.entries):
                    self._held = tail
                    buffer = buffer[:cut]
        return self._vault.restore(buffer)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return self._vault.restore(held)
