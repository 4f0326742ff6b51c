"""Data-set minimisation of the support context."""

from __future__ import annotations

from typing import Any

import pytest

from redaction import Minimised, minimise

CONTEXT: dict[str, Any] = {
    "product_id": "P-100",
    "account_status": "active",
    "email": "ana@example.com",
    "language": None,
    "order": {
        "id": "ORD-1",
        "items": [{"sku": "S1", "price": 9}, {"sku": "S2", "price": 5, "gift": True}, {"price": 1}],
        "shipping_address": {"line1": "1 High St"},
    },
    "tags": ["vip", "late"],
}


def test_keeps_only_the_data_set_and_names_the_rest() -> None:
    out = minimise(
        CONTEXT,
        required=["product_id", "account_status"],
        optional=["language", "order.items[].sku", "order.id", "recent_case_category"],
    )
    assert out == Minimised(
        kept={
            "product_id": "P-100",
            "account_status": "active",
            "order": {"id": "ORD-1", "items": [{"sku": "S1"}, {"sku": "S2"}, {}]},
        },
        used=("product_id", "account_status", "order.items[].sku", "order.id"),
        stripped=(
            "email",
            "order.items[].gift",
            "order.items[].price",
            "order.shipping_address",
            "tags",
        ),
        missing=(),
    )


def test_missing_and_null_required_fields() -> None:
    out = minimise(CONTEXT, required=["language", "customer.tier", "product_id"], optional=[])
    assert out.missing == ("language", "customer.tier")
    assert out.used == ("product_id",)
    assert "language" not in out.kept


def test_a_path_to_an_object_or_list_keeps_it_whole() -> None:
    out = minimise(CONTEXT, required=["order.shipping_address", "tags[]"], optional=["order"])
    assert out.kept["order"] == CONTEXT["order"]
    assert out.kept["tags"] == ["vip", "late"]
    assert out.missing == ()


def test_shape_mismatches_are_stripped_and_missing() -> None:
    context = {"order": "ORD-1", "items": {"sku": "S"}, "lines": ["a", {"sku": "S"}], "empty": []}
    out = minimise(
        context, required=["order.id", "items[].sku", "empty[]"], optional=["lines[].sku"]
    )
    assert out.kept == {"lines": [{}, {"sku": "S"}], "empty": []}  # kept, but holds nothing
    assert out.stripped == ("items", "lines[]", "order")
    assert out.missing == ("order.id", "items[].sku", "empty[]")
    assert out.used == ("lines[].sku",)


def test_an_object_with_nothing_kept_is_dropped() -> None:
    out = minimise({"order": {"total": 5}}, required=[], optional=["order.id"])
    assert out.kept == {}
    assert out.stripped == ("order.total",)
    assert out.used == ()


def test_empty_context_and_duplicate_paths() -> None:
    out = minimise({}, required=["a", "a"], optional=["a", "b"])
    assert out == Minimised(kept={}, used=(), stripped=(), missing=("a",))


@pytest.mark.parametrize("path", ["", "a..b", "a[]x", "a.[]", "a[0]"])
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        minimise({}, required=[path], optional=[])


def test_paths_that_disagree_about_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="list"):
        minimise({}, required=["items[].sku"], optional=["items.sku"])


def test_names_never_carry_values() -> None:
    out = minimise({"email": "ana@example.com", "x": {"y": "secret"}}, required=[], optional=[])
    assert out.stripped == ("email", "x")
    assert "secret" not in repr((out.used, out.stripped, out.missing))
