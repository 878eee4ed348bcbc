"""Pure validation and encoding rules of the single-event destinations (no I/O)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from connector.destinations.brevo.vendor import key_problem
from connector.destinations.event_endpoint import single_outcome
from connector.destinations.omnisend.events import EVENT_ID_NAMESPACE, contact_fields, event_id
from connector.destinations.omnisend.track import (
    compatible,
    flatten_properties,
    property_problem,
    value_type,
)
from connector.destinations.omnisend.vendor import omnisend_message


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


def test_brevo_keys_are_checked_at_every_depth() -> None:
    assert key_problem({"ok": {"also_ok-1": [{"fine": 1}]}}) is None
    assert "'ok.bad key'" in (key_problem({"ok": {"bad key": 1}}) or "")
    assert "'a[0].b c'" in (key_problem({"a": [{"b c": 1}]}) or "")


def test_v5_contact_fields_split_known_fields_from_custom_properties() -> None:
    contact, why = contact_fields(
        {
            "firstName": "Ada",
            "gender": "f",
            "birthdate": "1815-12-10",
            "postalCode": 75001,
            "tags": ["vip"],
            "plan": "pro",
            "customProperties": {"tier": "gold"},
        }
    )
    assert why == ""
    assert contact == {
        "firstName": "Ada",
        "gender": "f",
        "birthdate": "1815-12-10",
        "postalCode": "75001",
        "tags": ["vip"],
        "customProperties": {"tier": "gold", "plan": "pro"},
    }


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"firstName": "x" * 51}, "firstName is 51 characters (max 50)"),
        ({"countryCode": "FRAN"}, "countryCode is 4 characters (max 3)"),
        ({"gender": "x"}, "gender must be 'm' or 'f'"),
        ({"birthdate": "10/12/1815"}, "birthdate must be YYYY-MM-DD"),
        ({"tags": [str(i) for i in range(101)]}, "tags has 101 items (max 100)"),
        ({"tags": [1]}, "tags must be strings"),
        ({"optIns": [{}] * 11}, "optIns has 11 items (max 10)"),
        ({"city": {"a": 1}}, "city must be a string"),
        ({"likes": [1, 2]}, "array of non-strings"),
    ],
)
def test_v5_contact_rules(props: dict[str, object], reason: str) -> None:
    contact, why = contact_fields(props)
    assert reason in why and contact == {}


def test_v5_event_id_is_a_deterministic_uuid5_of_the_dedup_id() -> None:
    a = event_id("orders:ord-1")
    assert a == event_id("orders:ord-1") == str(uuid.uuid5(EVENT_ID_NAMESPACE, "orders:ord-1"))
    assert uuid.UUID(a).version == 5
    assert a != event_id("orders:ord-2")


def test_single_event_responses_map_to_outcomes() -> None:
    assert single_outcome("Brevo", 204, "").delivered == [0]
    assert single_outcome("Omnisend", 202, "").delivered == [0]
    assert single_outcome("Brevo", 400, "invalid_parameter: x").rejected == {
        0: "Brevo 400: invalid_parameter: x"
    }
    assert single_outcome("Brevo", 413, "too big").rejected
    fatal = single_outcome("Omnisend", 404, "no such endpoint").fatal
    assert fatal and "404" in fatal


def test_omnisend_errors_read_the_error_and_its_fields() -> None:
    body = b'{"error": "bad input", "fields": {"contact.email": "invalid"}}'
    assert omnisend_message(400, body) == "bad input (contact.email: invalid)"
    assert omnisend_message(502, b"<html>") == "<html>"
    assert omnisend_message(500, b"") == "HTTP 500"
