"""Omnisend v4 ``track`` (``destinations.omnisend.track``), its pure rules (no I/O): property
types as the supported types table says, numbers and decimals as sent, nested properties
flattened or refused, the static property rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.destinations.omnisend.track import (
    compatible,
    flatten_properties,
    property_problem,
    value_type,
)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "bool"),
        (3, "int"),
        (3.5, "float"),
        ("2021-09-01", "date"),
        ("2021-09-01T12:41:52Z", "dateTime"),
        ("2021-09-01T12:41:52.000+03:00", "dateTime"),
        ("a@b.com", "email"),
        ("https://example.com/", "url"),
        ("lorem ipsum", "string"),
    ],
)
def test_omnisend_types_follow_the_supported_types_table(value: object, kind: str) -> None:
    assert value_type(value) == kind


def test_an_int_fits_a_float_property_but_nothing_else_converts() -> None:
    assert compatible("float", "int")
    assert not compatible("int", "float")
    assert not compatible("string", "date")


def test_numbers_are_not_rounded_by_the_client_omnisend_rounds_them_itself() -> None:
    props, why = flatten_properties({"a": 1234567.8912, "b": Decimal("12345678901234567.89")}, "")
    assert (props, why) == ({"a": 1234567.8912, "b": Decimal("12345678901234567.89")}, "")


def test_decimals_are_typed_like_the_json_number_they_are_sent_as() -> None:
    assert value_type(Decimal("18.99")) == "float"
    assert value_type(Decimal("5.00")) == "float"
    assert value_type(Decimal("42")) == "int"


def test_nested_properties_flatten_to_underscore_names() -> None:
    props, why = flatten_properties({"a": {"b": 1, "c": {"d": "x"}}, "e": None}, "flatten")
    assert (props, why) == ({"a_b": 1, "a_c_d": "x"}, "")


def test_nested_properties_are_refused_with_the_reject_option_and_arrays_always() -> None:
    assert "object" in flatten_properties({"a": {"b": 1}}, "reject")[1]
    assert "array" in flatten_properties({"a": [1]}, "flatten")[1]


def test_a_flattened_name_colliding_with_another_property_is_refused() -> None:
    assert "twice" in flatten_properties({"a_b": 1, "a": {"b": 2}}, "flatten")[1]


def test_v4_static_property_rules() -> None:
    assert property_problem({f"p{i}": i for i in range(100)}) is None
    assert "101 properties" in (property_problem({f"p{i}": i for i in range(101)}) or "")
    assert "latin" in (property_problem({"é": 1}) or "")
    assert "latin" in (property_problem({"x" * 129: 1}) or "")
    assert "2049" in (property_problem({"s": "x" * 2049}) or "")
    assert property_problem({"s": "x" * 2048}) is None
