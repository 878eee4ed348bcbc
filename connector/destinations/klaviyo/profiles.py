"""Klaviyo ``POST /api/profile-bulk-import-jobs`` (contracts-contacts.md, Klaviyo).

Limits and rules from https://developers.klaviyo.com/en/reference/bulk_import_profiles,
get_bulk_import_profiles_job, get_errors_for_bulk_import_profiles_job, create_or_update_profile
and rate_limits_and_error_handling: ≤ 10,000 profiles and ≤ 5 MB per job, ≤ 100 KB per profile;
10/s burst and 150/min steady per account. The job answers 202 with its id; it is polled until
``complete`` (``cancelled`` fails the run); per-profile errors come from the job's
``import-errors`` pages without a row index and are matched to rows by identifier.

NULLs (the docs: bulk import writes only non-null values): a NULL custom property is listed in
``meta.patch_properties.unset`` (Klaviyo removes it) — only top-level names can be unset, a
NULL nested property is omitted; a NULL standard field (first_name, location.city...) is
omitted (``null_standard_fields: keep``) or, with ``clear``, cleared by one
``POST /api/profile-import`` per such row with ``null`` after the job confirmed the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import Field, field_validator, model_validator
from typing_extensions import override

from ...core.errors import ConfigError, RequestError
from ...core.options import DestinationSettings, RateLimit
from ..base import Limits
from ..contact_endpoint import (
    Contact,
    ContactDestination,
    ContactOptions,
    Gone,
    JobResult,
    JobRow,
    SyncView,
    email_change_warning,
    identifier_problem,
    join_body,
    json_object,
    match_errors,
    request_error,
)
from .vendor import (
    LOCATION_FIELDS,
    PROFILE_IDENTIFIERS,
    PROFILE_STRINGS,
    VENDOR,
    jsonapi_about_request,
    klaviyo_headers,
    standard_fragment,
)

MAX_PROFILES = 10_000
MAX_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024
# The profile fields are the vendor module's, shared with the event endpoint's profile block.
IDENTIFIERS = (*PROFILE_IDENTIFIERS, "id")
STANDARD = PROFILE_STRINGS
LOCATION = LOCATION_FIELDS
JOBS = "/api/profile-bulk-import-jobs"
PROFILES = "/api/profiles"
# remove_profiles_from_list: "This endpoint accepts a maximum of 1000 profiles per call."
MAX_UNLIST = 1000
# get_profiles: page[size] "Default: 20. Min: 1. Max: 100."; filter `any`/`equals` on these.
PAGE_SIZE = 100
LOOKUP_FIELDS = ("email", "external_id", "phone_number")
MAX_FILTER_CHARS = 4000  # keeps the query string of one lookup well under URL limits


class KlaviyoProfilesOptions(ContactOptions):
    """``options`` of ``klaviyo_profiles``."""

    revision: str = Field("2026-07-15", pattern=r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
    list_id: str | None = Field(
        None, min_length=1, description="Add every imported profile to this Klaviyo list."
    )
    null_standard_fields: Literal["keep", "clear"] = Field(
        "keep",
        description="A NULL standard field (first_name, location.city...): keep the profile's "
        "value (bulk import writes only non-null values), or clear it with one "
        "POST /api/profile-import per such row (75/s, 750/min).",
    )

    external_id_prefix: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Put this text in front of every external_id (e.g. 'shop-a:'), so that "
        "two syncs keying profiles of one Klaviyo account by plain integer ids do not merge "
        "each other's profiles. Changing it sends every row again (as new profiles).",
    )

    @override
    def fingerprint_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "list_id": self.list_id,
            "null_standard_fields": self.null_standard_fields,
        }
        if self.external_id_prefix is not None:  # (unset: the fingerprints stored before)
            out["external_id_prefix"] = self.external_id_prefix
        return out

    @model_validator(mode="after")
    def _unlist_needs_list(self) -> KlaviyoProfilesOptions:
        if self.on_removed == "unlist" and not self.list_id:
            raise ValueError(
                "on_removed: unlist removes vanished rows' profiles from the sync's list, and "
                "this sync has none: set options.list_id (the list imported profiles join), "
                "or use on_removed: keep"
            )
        return self

    @field_validator("on_missing")
    @classmethod
    def _no_update_only(cls, value: str) -> str:
        if value == "skip":
            raise ValueError(
                "on_missing: skip (update-only) is not available for klaviyo_profiles: "
                "Klaviyo's Bulk "
                "Import Profiles creates a profile for every identifier it does not know, and no "
                "option of it updates existing profiles only; use on_missing: create"
            )
        return value


class KlaviyoProfilesDestination(DestinationSettings):
    """``destination:`` block of a Klaviyo profile sync."""

    type: Literal["klaviyo_profiles"]
    options: KlaviyoProfilesOptions = Field(default_factory=KlaviyoProfilesOptions)


def _is_standard(name: str) -> bool:
    return name in STANDARD or name.startswith("location.")


class KlaviyoProfiles(ContactDestination[KlaviyoProfilesDestination]):
    """Klaviyo profiles through bulk import jobs (limits and NULL rules: module docstring)."""

    type = "klaviyo_profiles"
    config_model = KlaviyoProfilesDestination
    options: KlaviyoProfilesOptions
    vendor = VENDOR
    default_base_url = "https://a.klaviyo.com"
    identifier_fields = IDENTIFIERS
    stable_ids = ("external_id", "id")
    # Its own bucket: limits are per account per endpoint (rate_limits_and_error_handling).
    limits = Limits(
        max_items=MAX_PROFILES,
        max_bytes=MAX_BYTES,
        rate=RateLimit(per_second=10, per_minute=150),
    )
    secret_headers = ("authorization",)

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = []
        props = mapping.get("contact_properties")
        for name in props if isinstance(props, dict) else {}:
            name = str(name)
            where = f"mapping.contact_properties.{name}"
            if name == "location":
                out.append((where, "location is an object: map its fields (location.city...)"))
            elif name.startswith("location.") and name[9:] not in LOCATION:
                out.append(
                    (where, "unknown location field; expected one of " + ", ".join(LOCATION))
                )
            elif name in IDENTIFIERS:
                out.append((where, f"{name} is an identifier: map it under mapping.identifiers"))
        return out

    @override
    def auth_headers(self) -> dict[str, str]:
        return klaviyo_headers(self.api_key, self.options.revision)

    @override
    def validate_warnings(self, sync: SyncView) -> list[str]:
        return email_change_warning(sync, self.stable_ids, "Klaviyo")

    # -- rows --------------------------------------------------------------------------
    @override
    def check(self, contact: Contact) -> str | None:
        none = "no profile identifier: " + ", ".join(IDENTIFIERS) + " are all empty"
        problem = identifier_problem(contact.identifiers, IDENTIFIERS, none, "phone_number")
        if problem is not None:
            return problem
        for name, frag in contact.properties.items():
            if frag is not None and _is_standard(name) and standard_fragment(name, frag) is None:
                return f"profile {name} is a string attribute: the JSON holds an object or array"
        return None

    def _attributes(self, contact: Contact, *, nulls: bool) -> dict[str, Any]:
        attrs: dict[str, Any] = {k: v for k, v in contact.identifiers.items() if v and k != "id"}
        custom: dict[str, Any] = {}
        for name, frag in contact.properties.items():
            if frag is None and not (nulls and _is_standard(name)):
                continue
            standard = _is_standard(name)
            if frag is not None and standard:
                frag = standard_fragment(name, frag)  # strings in the OAS: "75001"
            value: Any = None if frag is None else orjson.Fragment(frag)
            target = attrs if standard else custom
            *parents, leaf = name.split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
        if custom:
            attrs["properties"] = custom
        return attrs

    @override
    def encode(self, contact: Contact) -> bytes:
        profile: dict[str, Any] = {"type": "profile"}
        if contact.identifiers.get("id"):
            profile["id"] = contact.identifiers["id"]
        profile["attributes"] = self._attributes(contact, nulls=False)
        unset = [
            name
            for name, frag in contact.properties.items()
            if frag is None and not _is_standard(name) and "." not in name
        ]
        if unset:
            profile["meta"] = {"patch_properties": {"unset": unset}}
        return orjson.dumps(profile)

    @override
    def too_big(self, payload: bytes) -> str | None:
        if len(payload) > MAX_PROFILE_BYTES:
            return f"profile encodes to {len(payload)} bytes; Klaviyo allows {MAX_PROFILE_BYTES}"
        return None

    # -- jobs --------------------------------------------------------------------------
    @override
    def job_overhead(self) -> int:
        return 300

    @override
    def job_request(self, rows: list[JobRow]) -> tuple[str, bytes]:
        tail = b"]}}"
        if self.options.list_id:
            tail += (
                b',"relationships":{"lists":{"data":[{"type":"list","id":'
                + orjson.dumps(self.options.list_id)
                + b"}]}}"
            )
        head = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
        return JOBS, join_body(head, [r.payload for r in rows], tail + b"}}")

    @override
    def submit(self, rows: list[JobRow]) -> str:
        _, body = self.job_request(rows)
        resp = self.call("POST", JOBS, body)
        if resp.status_code not in (200, 201, 202):
            raise request_error(f"POST {JOBS}", resp)
        job_id = json_object(resp, f"POST {JOBS}").get("data", {}).get("id")
        if not isinstance(job_id, str) or not job_id:
            raise RequestError(f"POST {JOBS} answered {resp.status_code} without a job id")
        return job_id

    @override
    def poll(self, job_id: str) -> bool:
        path = f"{JOBS}/{job_id}"
        resp = self.call("GET", path)
        if resp.status_code != 200:
            raise request_error(f"GET {path}", resp)
        status = (
            json_object(resp, f"GET {path}").get("data", {}).get("attributes", {}).get("status")
        )
        if status == "complete":
            return True
        if status in ("queued", "processing"):
            return False
        raise RequestError(
            f"Klaviyo import job {job_id} ended {status!r}: none of its profiles is confirmed; "
            "they are sent again by the next run"
        )

    @override
    def result(self, job_id: str, rows: list[JobRow]) -> JobResult:
        path = f"{JOBS}/{job_id}"
        doc = json_object(self.call("GET", path), f"GET {path}")
        attrs = doc.get("data", {}).get("attributes", {})
        failed = int(attrs.get("failed_count") or 0)
        reported: list[tuple[dict[str, Any], str]] = []
        if failed:
            url: str | None = f"{path}/import-errors"
            params: dict[str, Any] | None = {"page[size]": 100}
            while url:
                resp = self.call("GET", url, params=params)
                if resp.status_code != 200:
                    raise request_error(f"GET {path}/import-errors", resp)
                doc = json_object(resp, f"GET {path}/import-errors")
                for err in doc.get("data") or []:
                    a = err.get("attributes", {}) if isinstance(err, dict) else {}
                    payload = a.get("original_payload") or {}
                    ident = payload.get("attributes", payload) if isinstance(payload, dict) else {}
                    reason = ": ".join(
                        str(x) for x in (a.get("code"), a.get("detail") or a.get("title")) if x
                    )
                    reported.append((ident if isinstance(ident, dict) else {}, reason))
                url = (doc.get("links") or {}).get("next")
                params = None
        out = match_errors(rows, reported, IDENTIFIERS)
        if out.unknown is None and len(out.errors) < failed:
            out.unknown = (
                f"the job reports {failed} failed profiles but lists {len(out.errors)}; its rows "
                "stay unconfirmed and are sent again by the next run"
            )
        return out

    @override
    def after_confirm(self, rows: list[JobRow], contacts: list[Contact]) -> dict[int, str]:
        """``null_standard_fields: clear``: one ``POST /api/profile-import`` per confirmed row
        with a NULL standard field. Returns row index → error for rows it could not clear."""
        if self.options.null_standard_fields != "clear":
            return {}
        errors: dict[int, str] = {}
        for i, contact in enumerate(contacts):
            if not any(f is None and _is_standard(n) for n, f in contact.properties.items()):
                continue
            attrs = self._attributes(contact, nulls=True)
            body = orjson.dumps({"data": {"type": "profile", "attributes": attrs}})
            resp = self.call("POST", "/api/profile-import", body)
            if resp.status_code in (200, 201):
                continue
            code = resp.status_code
            if 400 <= code < 500 and not jsonapi_about_request(code, resp.content):
                errors[i] = f"clearing NULL standard fields: {resp.text[:300]}"
            else:
                raise request_error("POST /api/profile-import", resp)
        return errors

    # -- removed rows ------------------------------------------------------------------
    max_unlist_per_request = MAX_UNLIST

    @override
    def unlist(self, rows: list[Gone]) -> dict[int, str]:
        """``on_removed: unlist``: find each row's profile id (its stored ``id``, else
        ``GET /api/profiles`` filtered on email, then external_id, then phone_number) and
        remove those profiles from ``options.list_id`` with one ``DELETE
        /api/lists/{id}/relationships/profiles`` per 1,000 (remove_profiles_from_list: it
        "will not impact the profile's consent status or subscription status"). A row whose
        identifiers match no profile has nothing to remove; a row with no identifier the
        profile filter accepts is returned as refused."""
        list_id = self.options.list_id
        if not list_id:  # the options validator refuses this at load already
            raise ConfigError("on_removed: unlist needs options.list_id")
        found: dict[int, str] = {}
        refused: dict[int, str] = {}
        pending = []
        for i, row in enumerate(rows):
            if row.identifiers.get("id"):
                found[i] = row.identifiers["id"]
            elif any(row.identifiers.get(f) for f in LOOKUP_FIELDS):
                pending.append(i)
            else:
                refused[i] = (
                    "no identifier Klaviyo's profile lookup can filter on (id, email, "
                    "external_id, phone_number): cannot find its profile to unlist it"
                )
        for name in LOOKUP_FIELDS:
            wanted = [
                (i, rows[i].identifiers[name]) for i in pending if rows[i].identifiers.get(name)
            ]
            hits = self._profile_ids(name, sorted({v for _, v in wanted}))
            for i, value in wanted:
                hit = hits.get(_norm(name, value))
                if hit is not None:
                    found.setdefault(i, hit)
            pending = [i for i in pending if i not in found]
        ids = list(dict.fromkeys(found.values()))
        path = f"/api/lists/{list_id}/relationships/profiles"
        for start in range(0, len(ids), MAX_UNLIST):
            data = [{"type": "profile", "id": pid} for pid in ids[start : start + MAX_UNLIST]]
            resp = self.call("DELETE", path, orjson.dumps({"data": data}))
            if resp.status_code not in (200, 202, 204):
                raise request_error(f"DELETE {path}", resp)
        return refused

    def _profile_ids(self, name: str, values: list[str]) -> dict[str, str]:
        """Profile ids by (normalized) ``name`` value, for the values that have a profile."""
        out: dict[str, str] = {}
        groups: list[str] = []
        chunk: list[str] = []
        size = 0
        for value in values:
            if '"' in value:  # one lookup of its own, quoted with '
                if "'" not in value:
                    groups.append(f"equals({name},'{value}')")
                continue  # both quotes: not expressible in the filter syntax
            if chunk and (len(chunk) == PAGE_SIZE or size + len(value) + 3 > MAX_FILTER_CHARS):
                groups.append(_any(name, chunk))
                chunk, size = [], 0
            chunk.append(value)
            size += len(value) + 3
        if chunk:
            groups.append(_any(name, chunk))
        for expr in groups:
            url: str | None = PROFILES
            params: dict[str, Any] | None = {
                "filter": expr,
                "page[size]": PAGE_SIZE,
                "fields[profile]": ",".join(LOOKUP_FIELDS),
            }
            while url:
                resp = self.call("GET", url, params=params)
                if resp.status_code != 200:
                    # The filter holds the identifiers looked up: none in the message.
                    raise request_error(f"GET {PROFILES}", resp, tuple(values))
                doc = json_object(resp, f"GET {PROFILES}")
                for profile in doc.get("data") or []:
                    if not isinstance(profile, dict) or not isinstance(profile.get("id"), str):
                        continue
                    found = (profile.get("attributes") or {}).get(name)
                    if isinstance(found, str):
                        out.setdefault(_norm(name, found), profile["id"])
                url = (doc.get("links") or {}).get("next")
                params = None
        return out


def _any(name: str, values: list[str]) -> str:
    return f"any({name},[" + ",".join(f'"{v}"' for v in values) + "])"


def _norm(name: str, value: str) -> str:
    return value.lower() if name == "email" else value


DESTINATION = KlaviyoProfiles
