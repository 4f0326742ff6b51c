"""The request bodies: one realistic support conversation (about 3 KB, 5 messages).

Each request is a new turn of the same case: the history is resent as it is, and the
last message is new text (its `TURN` marker becomes letters that no other request of the
load generator's process sends, `turn`) that names values the case already holds. A
conversation sent byte for byte again and again would be one that Casegate's redaction
memo answers from memory; a new turn is scanned, as it would be in production.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGES: list[dict[str, str]] = [
    {
        "role": "system",
        "content": (
            "You are a support assistant for Northwind Home, an online retailer of small "
            "kitchen appliances. Classify the customer's issue into one of: delivery, "
            "damaged_item, refund, warranty, account, other. Give a one-sentence summary, "
            "an urgency from 1 (low) to 4 (critical) and the next best action for the agent. "
            "Be factual, do not promise refunds or compensation, and never ask the customer "
            "for card details. Answer in the customer's language."
        ),
    },
    {
        "role": "user",
        "content": (
            "Hello, I ordered the Breville-style espresso machine (order NW-58213-K) on the "
            "3rd and the tracking page has said 'out for delivery' for four days now. I took "
            "a day off work on Tuesday to wait for it and nobody came, no card through the "
            "door, nothing. I have tried the courier's chat twice and both times it told me "
            "to contact the retailer. I'd like to know where the parcel actually is and "
            "whether I should expect it this week, because it's a birthday present for my "
            "partner and the birthday is on Saturday. You can email me at "
            "jane.whitfield@example.co.uk or ring me on 07700 900123 any time after 5pm."
        ),
    },
    {
        "role": "assistant",
        "content": (
            "I'm sorry your parcel hasn't arrived, especially with a birthday coming up. "
            "I can see order NW-58213-K was handed to the courier on the 4th. So that I "
            "can raise a trace with them, could you confirm the delivery address on the "
            "order is still correct, and whether there is a safe place or a neighbour "
            "the driver may leave it with if you are out?"
        ),
    },
    {
        "role": "user",
        "content": (
            "Yes, the address is right: flat 2, 14 Marlborough Road. There is a porch "
            "with a code lock, the driver can ring flat 1 (Mr Okafor) who is home most days. "
            "I also noticed I was charged twice on my statement, once for 189.99 and once "
            "for 194.98, I assume one of those is the delivery charge but I chose free "
            "delivery at checkout, so please check that too. My partner's number as a "
            "backup contact is +44 20 7946 0958. I really don't want to order it again "
            "from somewhere else, but if it isn't going to arrive by Friday I'll need to "
            "cancel and get my money back, so please let me know today if possible."
        ),
    },
    {
        "role": "user",
        "content": (
            "Sorry, one more thing (message @@TURN@@): the confirmation email went to my "
            "old work address "
            "j.whitfield@oldcompany.example, can you update the account so that "
            "everything goes to my personal email from now on? Thanks for your help."
        ),
    },
]

#: in the bodies: replaced by `turn` per request, with eight letters (the size stays the
#: same, and no digit is added for the number recognizers to read)
TURN = "@@TURN@@"
_TURN = TURN.encode()


def turn(body: bytes, n: int) -> bytes:
    """`body` as request number `n` sends it."""
    letters = bytearray(8)
    for i in range(7, -1, -1):
        n, letters[i] = divmod(n, 26)
        letters[i] += 97  # "a"
    return body.replace(_TURN, bytes(letters))


CASEGATE_FIELDS: dict[str, Any] = {
    "customer": {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"},
    "context": {"product_id": "P-100", "account_status": "active", "email": "a@b.example"},
}


def body(*, casegate: bool, stream: bool) -> bytes:
    """The JSON body: Casegate's route and ``casegate`` object, or the upstream model."""
    doc: dict[str, Any] = {
        "model": "support-default" if casegate else "gpt-bench",
        "messages": MESSAGES,
    }
    if stream:
        doc["stream"] = True
    if casegate:
        doc["casegate"] = CASEGATE_FIELDS
    return json.dumps(doc).encode()


if __name__ == "__main__":
    print(len(json.dumps(MESSAGES).encode()), "bytes of messages")
