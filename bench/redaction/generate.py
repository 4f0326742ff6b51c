# ruff: noqa: E501  (template and data tables read better on one line)
"""Write the labelled corpus `corpus.jsonl` ONCE (Faker, fixed seed) plus hand cases.

    python bench/redaction/generate.py     # rewrites corpus.jsonl; commit the result

The corpus is committed and is not regenerated to suit the detectors. Each line:
{"id": "...", "source": "faker|hard|lookalike", "text": "...",
 "spans": [{"start": 0, "end": 5, "entity": "EMAIL"}]}.
Hand cases mark PII inline as [[ENTITY|value]].
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from faker import Faker

from bench.redaction.hand_cases import HARD, LOOKALIKES

SEED = 20261128
HERE = Path(__file__).resolve().parent
LOCALES = ["en_GB", "en_US", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"]

# Public test numbers: card numbers from payment processors' testing documentation,
# IBANs from the ISO 13616 / SWIFT IBAN registry examples (see README.md).
TEST_CARDS = [
    "4111 1111 1111 1111", "4242 4242 4242 4242", "4012 8888 8888 1881",
    "5555 5555 5555 4444", "5105 1051 0510 5100", "2223 0031 2200 3222",
    "3782 822463 10005", "3714 496353 98431", "6011 1111 1111 1117",
    "6011 0009 9013 9424", "3530 1113 3330 0000", "3056 9309 0259 04",
    "6200 0000 0000 0005",
]  # fmt: skip
TEST_IBANS = [
    "GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00",
    "FR14 2004 1010 0505 0001 3M02 606", "NL91 ABNA 0417 1643 00",
    "ES91 2100 0418 4502 0005 1332", "IT60 X054 2811 1010 0000 0123 456",
    "BE68 5390 0754 7034", "IE29 AIBK 9311 5212 3456 78", "CH93 0076 2011 6238 5295 7",
    "AT61 1904 3002 3457 3201", "NO93 8601 1117 947", "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
]  # fmt: skip

OPENERS = [
    "Hi, I ordered {product} last week and it still hasn't arrived.",
    "Hello team, my {product} stopped working after two days.",
    "Good morning, I'd like a refund for the {product} on order {order}.",
    "Hey, the invoice {invoice} for my {product} is wrong.",
    "Dear support, I was charged twice for {product} ({price}).",
    "I'm writing about ticket {ticket}, which was closed without an answer.",
]
PII_LINES = {
    "EMAIL": ["You can reach me at {v}.", "My email is {v} if that helps.", "Please reply to {v} rather than this address."],
    "PHONE": ["Call me on {v} after 5pm.", "My number is {v}.", "Phone: {v}"],
    "CREDIT_CARD": ["I paid with the card {v}.", "The card ending in that number is {v}, please check.", "Card no. {v}"],
    "IBAN": ["Refund it to IBAN {v} please.", "My bank account is {v}.", "IBAN: {v}"],
    "IP_ADDRESS": ["The app said my IP {v} was blocked.", "Login attempts came from {v}.", "Our router shows {v}."],
    "US_SSN": ["For the credit check, my SSN is {v}.", "Social security number: {v}", "SSN {v}"],
    "UK_NINO": ["My National Insurance number is {v}.", "NI number: {v}", "NINO {v} for the payroll form."],
}  # fmt: skip
CLOSERS = [
    "Thanks, {name}",
    "Kind regards,\n{name}",
    "Cheers",
    "Order placed on {date}, total {price}, tracking {tracking}.",
    "Using app version {version} on my phone.",
]


def nino(rng: random.Random) -> str:
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in {"BG", "GB", "KN", "NK", "NT", "TN"}:
        second = "A"
    digits = "".join(rng.choice("0123456789") for _ in range(6))
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{first}{second}{digits}{suffix}"


def group(digits: str, rng: random.Random) -> str:
    style = rng.random()
    if style < 0.4:
        return digits
    sep = " " if style < 0.8 else "-"
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def value(entity: str, fake: Faker, rng: random.Random) -> str:
    if entity == "EMAIL":
        email = fake.email()
        if rng.random() < 0.1:
            local, domain = email.split("@")
            return f"{local} [at] {domain.replace('.', ' [dot] ')}"
        return email
    if entity == "PHONE":
        return Faker(rng.choice(LOCALES)).phone_number()
    if entity == "CREDIT_CARD":
        if rng.random() < 0.3:
            return rng.choice(TEST_CARDS)
        return group(fake.credit_card_number(), rng)
    if entity == "IBAN":
        if rng.random() < 0.3:
            return rng.choice(TEST_IBANS)
        iban = Faker(rng.choice(["en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"])).iban()
        return (
            iban
            if rng.random() < 0.5
            else " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        )
    if entity == "IP_ADDRESS":
        return fake.ipv4() if rng.random() < 0.6 else fake.ipv6()
    if entity == "US_SSN":
        return Faker("en_US").ssn()
    return nino(rng)


def fillers(fake: Faker, rng: random.Random) -> dict[str, str]:
    return {
        "product": rng.choice(["kettle", "router", "headphones", "desk lamp", "blender"]),
        "order": f"ORD-{rng.randint(2019, 2026)}-{rng.randint(0, 999999):06d}",
        "invoice": f"INV{rng.randint(10**7, 10**8 - 1)}",
        "ticket": f"#{rng.randint(10**5, 10**7)}",
        "price": rng.choice(["$", "£", "€"]) + f"{rng.randint(5, 2500):,}.{rng.randint(0, 99):02d}",
        "name": fake.name(),
        "date": fake.date(pattern=rng.choice(["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%B %d, %Y"])),
        "tracking": rng.choice(
            [
                f"1Z{rng.randint(10**15, 10**16 - 1):X}",
                f"{rng.randint(10**21, 10**22 - 1)}",
                f"JD{rng.randint(10**17, 10**18 - 1)}",
            ]
        ),
        "version": f"{rng.randint(1, 15)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
    }


def faker_records(count: int) -> list[dict[str, object]]:
    Faker.seed(SEED)
    rng = random.Random(SEED)
    fake = Faker("en_GB")
    records: list[dict[str, object]] = []
    for n in range(count):
        fill = fillers(fake, rng)
        parts: list[tuple[str, str | None]] = [(rng.choice(OPENERS).format(**fill) + " ", None)]
        for entity in rng.sample(sorted(PII_LINES), k=rng.randint(0, 3)):
            line = rng.choice(PII_LINES[entity])
            before, after = line.split("{v}")
            parts += [(before, None), (value(entity, fake, rng), entity), (after + " ", None)]
        parts.append(
            (fake.paragraph(nb_sentences=2) + " " + rng.choice(CLOSERS).format(**fill), None)
        )
        records.append(assemble(f"faker-{n:04d}", "faker", parts))
    return records


def assemble(ident: str, source: str, parts: list[tuple[str, str | None]]) -> dict[str, object]:
    text, spans = "", []
    for chunk, entity in parts:
        if entity is not None:
            spans.append({"start": len(text), "end": len(text) + len(chunk), "entity": entity})
        text += chunk
    return {"id": ident, "source": source, "text": text, "spans": spans}


_MARK = re.compile(r"\[\[([A-Z_]+)\|(.*?)\]\]", re.S)


def marked(ident: str, source: str, text: str) -> dict[str, object]:
    parts: list[tuple[str, str | None]] = []
    last = 0
    for m in _MARK.finditer(text):
        parts += [(text[last : m.start()], None), (m.group(2), m.group(1))]
        last = m.end()
    parts.append((text[last:], None))
    return assemble(ident, source, parts)


def main() -> None:
    records = faker_records(800)
    records += [marked(f"hard-{i:03d}", "hard", t) for i, t in enumerate(HARD)]
    records += [marked(f"lookalike-{i:03d}", "lookalike", t) for i, t in enumerate(LOOKALIKES)]
    with (HERE / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} records to {HERE / 'corpus.jsonl'}")


if __name__ == "__main__":
    main()
