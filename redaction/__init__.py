"""PII redaction and data minimisation for everything Casegate sends upstream.

    from redaction import Redactor, Vault, StreamRestorer, minimise

    kept = minimise(context, required=["product_id"], optional=["order.items[].sku"])
    redactor = Redactor(["EMAIL", "PHONE", "CREDIT_CARD"])   # once per use case
    vault = Vault.from_json(blob) if blob else Vault()         # one per case
    out = redactor.redact("card 4111 1111 1111 1111", vault)   # "card <CREDIT_CARD_1>"
    vault.restore(model_reply)                                 # the values back, for the agent

A leaf package: it imports only the standard library (and pydantic, if ever needed).
"""

from .errors import RedactionError, UnknownEntityError
from .minimise import Minimised, minimise
from .recognizers import Recognizer
from .redactor import ENTITIES, Redacted, Redactor
from .text import strip_invisible
from .vault import StreamRestorer, Vault

__all__ = [
    "ENTITIES",
    "Minimised",
    "Recognizer",
    "Redacted",
    "RedactionError",
    "Redactor",
    "StreamRestorer",
    "UnknownEntityError",
    "Vault",
    "minimise",
    "strip_invisible",
]
