"""Request facts: what eligibility rules are evaluated against.

    facts = facts_from_customer(body["casegate"]["customer"], queue=queue, segment=segment)

`Facts` mirrors the request's closed ``casegate.customer`` object plus the queue and
segment headers. An absent fact is ``None`` (or an absent key), and a rule on an absent
fact fails: nobody is eligible by omission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from policies.errors import FactsError

__all__ = ["CUSTOMER_KEYS", "Facts", "facts_from_customer"]

#: The keys of the request's ``casegate.customer`` object (it is closed).
CUSTOMER_KEYS: frozenset[str] = frozenset({"authenticated", "consent", "region", "attributes"})


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Facts:
    """The governance facts of one request."""

    authenticated: bool | None = None
    consent: Mapping[str, bool] = field(default_factory=_empty)
    region: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=_empty)
    queue: str | None = None
    segment: str | None = None


def facts_from_customer(
    customer: Mapping[str, Any], *, queue: str | None, segment: str | None
) -> Facts:
    """Build `Facts` from a ``casegate.customer`` object; `FactsError` names a bad key.

    The object is closed (unknown keys are errors) and typed: ``authenticated`` is a
    boolean, ``consent`` maps purposes to booleans, ``region`` is a string,
    ``attributes`` is an object. Any may be absent.
    """
    if not isinstance(customer, Mapping):
        raise FactsError("customer", "must be an object")
    for key in customer:
        if key not in CUSTOMER_KEYS:
            raise FactsError(f"customer.{key}", "unknown key")
    authenticated = customer.get("authenticated")
    if authenticated is not None and not isinstance(authenticated, bool):
        raise FactsError("customer.authenticated", "must be a boolean")
    region = customer.get("region")
    if region is not None and not isinstance(region, str):
        raise FactsError("customer.region", "must be a string")
    consent = customer.get("consent")
    if consent is None:
        consent = {}
    if not isinstance(consent, Mapping):
        raise FactsError("customer.consent", "must be an object")
    for purpose, given in consent.items():
        if not isinstance(purpose, str) or not isinstance(given, bool):
            raise FactsError(f"customer.consent.{purpose}", "must be a boolean")
    attributes = customer.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        raise FactsError("customer.attributes", "must be an object")
    return Facts(
        authenticated=authenticated,
        consent=MappingProxyType(dict(consent)),
        region=region,
        attributes=MappingProxyType(dict(attributes)),
        queue=queue,
        segment=segment,
    )
