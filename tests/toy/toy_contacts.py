"""``toy_contacts``: a made-up contact endpoint, the contact example of
docs/adding-a-destination.md.

The registry test copies this file into ``connector/destinations/`` of a copy of the package,
adds its one line to ``registry.ENDPOINT_MODULES`` and runs a contact sync through it: config,
JSON Schema, validate, the diff, the jobs and their polls need nothing else. (Absolute imports,
so the file also type-checks where it lies; a real endpoint module imports ``..base``,
``..contact_endpoint`` and its vendor module.)

ToyCo's contact import: ``POST /contacts/jobs`` with ``{"profiles": [{email, plan, ...}]}``,
≤ 20 profiles and ≤ 64 KB per job, answers 202 ``{"job": "<id>"}``; ``GET /contacts/jobs/<id>``
answers ``{"status": "running"}`` until the job is ``done``, then lists the profiles it refused
as ``errors: [{"email", "reason"}]`` (no row index: matched by e-mail).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from connector.core.errors import RequestError
from connector.core.options import DestinationSettings, RateLimit
from connector.destinations.base import Limits, Vendor
from connector.destinations.contact_endpoint import (
    Contact,
    ContactDestination,
    ContactOptions,
    JobResult,
    JobRow,
    join_body,
    json_object,
    match_errors,
    request_error,
)

VENDOR = Vendor(name="toyco", title="ToyCo")
JOBS = "/contacts/jobs"


class ToyContactsOptions(ContactOptions):
    """``options`` of ``toy_contacts``."""

    segment: str = Field("all", min_length=1, description="ToyCo segment of every profile.")


class ToyContactsDestination(DestinationSettings):
    """``destination`` block of a ``toy_contacts`` sync."""

    type: Literal["toy_contacts"]
    options: ToyContactsOptions = Field(default_factory=ToyContactsOptions)


class ToyContacts(ContactDestination[ToyContactsDestination]):
    """``toy_contacts``: import jobs of up to 20 profiles, polled until done."""

    type = "toy_contacts"
    config_model = ToyContactsDestination
    options: ToyContactsOptions
    vendor = VENDOR
    identifier_fields = ("email",)
    default_base_url = "https://contacts.toyco.invalid"
    limits = Limits(max_items=20, max_bytes=64 * 1024, rate=RateLimit(per_second=100))
    secret_headers = ("x-toy-key",)

    def auth_headers(self) -> dict[str, str]:
        return {"x-toy-key": self.api_key, "content-type": "application/json"}

    def check(self, contact: Contact) -> str | None:
        return None if contact.identifiers.get("email") else "no email"

    def encode(self, contact: Contact) -> bytes:
        props = {k: orjson.Fragment(v) for k, v in contact.properties.items() if v is not None}
        profile = {"email": contact.identifiers["email"], "segment": self.options.segment}
        return orjson.dumps({**profile, **props})

    def job_request(self, rows: list[JobRow]) -> tuple[str, bytes]:
        return JOBS, join_body(b'{"profiles":[', [r.payload for r in rows], b"]}")

    def submit(self, rows: list[JobRow]) -> str:
        _, body = self.job_request(rows)
        resp = self.call("POST", JOBS, body)
        if resp.status_code != 202:
            raise request_error(f"POST {JOBS}", resp)
        job = json_object(resp, f"POST {JOBS}").get("job")
        if not isinstance(job, str):
            raise RequestError(f"POST {JOBS} answered without a job id")
        return job

    def poll(self, job_id: str) -> bool:
        return self._status(job_id).get("status") == "done"

    def result(self, job_id: str, rows: list[JobRow]) -> JobResult:
        errors = self._status(job_id).get("errors") or []
        reported = [({"email": e["email"]}, f"ToyCo: {e['reason']}") for e in errors]
        return match_errors(rows, reported, self.identifier_fields)

    def _status(self, job_id: str) -> dict[str, Any]:
        resp = self.call("GET", f"{JOBS}/{job_id}")
        if resp.status_code != 200:
            raise request_error(f"GET {JOBS}/{{id}}", resp)
        return json_object(resp, f"GET {JOBS}/{{id}}")


DESTINATION = ToyContacts
