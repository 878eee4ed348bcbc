"""Validate request bodies against the vendors' published OpenAPI request schemas (the subsets
in ``tests/openapi/``, provenance in its README)."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from openapi_schema_validator import (
    OAS30Validator,
    OAS31Validator,
    oas30_format_checker,
    oas31_format_checker,
)

HERE = Path(__file__).parent / "openapi"
FILES = {
    "klaviyo": "klaviyo-2026-07-15.json",
    "omnisend": "omnisend-2026-03-15.json",
    "brevo": "brevo-v3-2026.json",
}

# Sandbox path → (vendor, path in the OpenAPI). Omnisend's server is …/api, Brevo's …/v3.
ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"/api/event-bulk-create-jobs/?"), "klaviyo", "/api/event-bulk-create-jobs"),
    (re.compile(r"/api/profile-bulk-import-jobs"), "klaviyo", "/api/profile-bulk-import-jobs"),
    (re.compile(r"/api/profile-import"), "klaviyo", "/api/profile-import"),
    (
        re.compile(r"/api/lists/[^/]+/relationships/profiles"),
        "klaviyo",
        "/api/lists/{id}/relationships/profiles",
    ),
    (re.compile(r"/api/events"), "omnisend", "/events"),
    (re.compile(r"/api/contacts"), "omnisend", "/contacts"),
    (re.compile(r"/api/batches"), "omnisend", "/batches"),
    (re.compile(r"/v3/events"), "brevo", "/events"),
    (re.compile(r"/v3/events/batch"), "brevo", "/events/batch"),
    (re.compile(r"/v3/contacts/import"), "brevo", "/contacts/import"),
    (
        re.compile(r"/v3/contacts/lists/\d+/contacts/remove"),
        "brevo",
        "/contacts/lists/{listId}/contacts/remove",
    ),
]
NOT_DOCUMENTED = ("/v4/track", "/v5/events", "/api/v2/trackEvent")


@cache
def _document(vendor: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((HERE / FILES[vendor]).read_text())
    if vendor == "brevo":
        _allow_brevo_numbers_and_booleans(doc)
    else:
        _nullable_unions(doc)
    return doc


def _nullable_unions(node: Any) -> None:
    """``nullable: true`` beside a ``oneOf`` with no ``type`` (Klaviyo's location.latitude and
    longitude: ``oneOf [string, number]``, nullable): OAS 3.0.3 gives ``nullable`` effect only
    next to ``type``, so a strict validator refuses the null the document means to allow. The
    union gets a null branch."""
    if isinstance(node, dict):
        if node.get("nullable") is True and "oneOf" in node and "type" not in node:
            node["oneOf"] = [*node["oneOf"], {"type": "string", "nullable": True, "enum": [None]}]
        for value in node.values():
            _nullable_unions(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_unions(value)


def _allow_brevo_numbers_and_booleans(doc: dict[str, Any]) -> None:
    """The event property unions leave out number (and, in the batch item, boolean) although
    their descriptions list "string, number, boolean (true/false), date": spec drift
    (contracts.md §3.1). ``anyOf``, since an integer is a number too."""
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        if name.endswith(("EventProperties", "ContactProperties")) and "oneOf" in schema:
            union = schema.pop("oneOf")
            types = {branch.get("type") for branch in union}
            union += [{"type": t} for t in ("number", "boolean") if t not in types]
            schema["anyOf"] = union


def _validator(vendor: str, schema: dict[str, Any]) -> Any:
    doc = _document(vendor)
    wrapped = {**copy.deepcopy(schema), "components": doc["components"]}
    if vendor == "brevo":
        return OAS31Validator(wrapped, format_checker=oas31_format_checker)
    return OAS30Validator(wrapped, format_checker=oas30_format_checker)


def _request_schema(vendor: str, path: str, method: str) -> dict[str, Any]:
    operation = _document(vendor)["paths"][path][method.lower()]
    content = operation["requestBody"]["content"]
    schema: dict[str, Any] = next(iter(content.values()))["schema"]
    return schema


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def problems(path: str, body: bytes, method: str = "POST") -> list[str]:
    """What the vendor's request schema finds wrong with ``body`` sent to sandbox ``path``
    (``["no OpenAPI"]`` for an endpoint no published document covers)."""
    if path in NOT_DOCUMENTED:
        return ["no OpenAPI"]
    found_route = next((r for r in ROUTES if r[0].fullmatch(path)), None)
    if found_route is None:
        raise AssertionError(f"no OpenAPI route for {path}")
    _, vendor, spec_path = found_route
    if spec_path.endswith("/relationships/profiles"):
        method = "DELETE"
    value = json.loads(body)
    schema = _request_schema(vendor, spec_path, method)
    found = _errors(vendor, schema, value if not isinstance(value, list) else {"events": value})
    if spec_path == "/batches" and value.get("endpoint") == "contacts":
        for i, item in enumerate(value.get("items") or []):  # CreateBatchRequest: items of {}
            found += [f"items/{i}: {e}" for e in _errors(vendor, _ref("ContactRequest"), item)]
    if spec_path.endswith("/contacts/remove"):
        key = next(k for k in ("emails", "ids", "extIds", "all") if k in value)
        branch = {"emails": "Emails", "ids": "IDs", "extIds": "ExtIDs", "all": "All"}[key]
        found = _errors(vendor, _ref(f"legacy2024_removeContactFromListBy{branch}"), value)
    return found


def _errors(vendor: str, schema: dict[str, Any], value: Any) -> list[str]:
    validator = _validator(vendor, schema)
    out = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path)
        out.append(f"{where}: {err.message[:200]}")
    return out
