"""Fault injection: a FIFO of faults per path, and the gate that holds hung/delayed requests.

A fault applies to the next request whose path matches (``"*"`` matches every vendor path,
never the ``/_sandbox/`` control paths). Without ``after_process`` the fault replaces the
normal processing (nothing is recorded); with it the request is processed and recorded first,
then the fault spoils the reply — "the vendor stored it but the client never saw the answer".
Order inside one fault: wait ``delay_s``, then ``hang`` until released, then ``reset`` the
connection or answer ``status``; if neither is set the normal reply is sent.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

#: The contact kinds (one per vendor); the same names the destination types use. Here, not in
#: ``contacts``, so that ``contacts`` (which stores the job faults) can import this module.
CONTACT_KINDS: tuple[str, ...] = ("klaviyo_profiles", "brevo_contacts", "omnisend_contacts")

_FAULT_FIELDS = (
    "path",
    "status",
    "headers",
    "body",
    "content_type",
    "reset",
    "delay_s",
    "hang",
    "after_process",
    "times",
)


@dataclass
class Fault:
    """One injected failure for the next ``times`` requests to ``path``.

    ``body`` may be bytes, a string (sent as is) or a JSON value; when None the endpoint's own
    error body for ``status`` is used. ``headers`` are the only rate-limit headers sent, so
    ``Fault(path, status=429)`` is a 429 with no hint at all.
    """

    path: str = "*"
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str | None = None
    reset: bool = False
    delay_s: float = 0.0
    hang: bool = False
    after_process: bool = False
    times: int = 1

    def __post_init__(self) -> None:
        if self.status is None and not (self.reset or self.hang or self.delay_s > 0):
            raise ValueError("a Fault needs status, reset, hang or delay_s")
        if self.status is not None and self.reset:
            raise ValueError("a Fault cannot both reset the connection and answer a status")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be an HTTP status, got {self.status}")
        if self.delay_s < 0 or self.times < 1:
            raise ValueError("Fault.delay_s must be >= 0 and Fault.times >= 1")

    @classmethod
    def html_403(cls, path: str = "*", times: int = 1) -> Fault:
        """A Cloudflare-style HTML challenge (contracts §6.4: 403 text/html, cf-mitigated)."""
        return cls(
            path=path,
            status=403,
            headers={"cf-mitigated": "challenge"},
            body="<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
            "<body>Checking your browser.</body></html>",
            content_type="text/html; charset=UTF-8",
            times=times,
        )

    @classmethod
    def from_dict(cls, obj: Any) -> Fault:
        """Build from the JSON accepted by ``POST /_sandbox/faults``; ValueError if invalid."""
        if not isinstance(obj, dict):
            raise ValueError("each fault must be a JSON object")
        unknown = sorted(set(obj) - set(_FAULT_FIELDS))
        if unknown:
            raise ValueError(f"unknown fault fields {unknown}; known: {list(_FAULT_FIELDS)}")
        headers = obj.get("headers") or {}
        if not isinstance(headers, dict):
            raise ValueError("fault headers must be an object")
        try:
            return cls(
                path=str(obj.get("path", "*")),
                status=None if obj.get("status") is None else int(obj["status"]),
                headers={str(k): str(v) for k, v in headers.items()},
                body=obj.get("body"),
                content_type=obj.get("content_type"),
                reset=bool(obj.get("reset", False)),
                delay_s=float(obj.get("delay_s", 0.0)),
                hang=bool(obj.get("hang", False)),
                after_process=bool(obj.get("after_process", False)),
                times=int(obj.get("times", 1)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid fault: {exc}") from None

    def body_bytes(self) -> bytes | None:
        """The body to send as bytes (JSON values serialized), or None for the endpoint's own."""
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return orjson.dumps(self.body)

    def matches(self, path: str) -> bool:
        """Whether this fault applies to ``path``: ``*`` matches every vendor path; a path with
        ``*`` in it is a glob (``/v3/processes/*`` hits every process poll); else the paths
        must be equal."""
        if self.path == "*":
            return True
        if "*" in self.path:
            return fnmatch.fnmatchcase(path.rstrip("/"), self.path.rstrip("/"))
        return self.path.rstrip("/") == path.rstrip("/")


class FaultQueue:
    """Thread-safe FIFO; ``take`` pops the first fault matching a path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[list[Any]] = []  # [fault, uses left]

    def push(self, *faults: Fault) -> None:
        """Queue faults behind those already waiting."""
        with self._lock:
            self._faults.extend([f, f.times] for f in faults)

    def take(self, path: str) -> Fault | None:
        """The first queued fault matching ``path``, using up one of its ``times`` (None if none
        matches)."""
        with self._lock:
            for i, entry in enumerate(self._faults):
                fault: Fault = entry[0]
                if fault.matches(path):
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._faults[i]
                    return fault
        return None

    def pending(self) -> int:
        """How many uses are left over all queued faults."""
        with self._lock:
            return sum(entry[1] for entry in self._faults)

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()


class HangGate:
    """Holds requests (hang faults, delays, latency) and lets them go on release or stop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._hung = 0
        self._total = 0
        self._generation = 0
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """Whether the gate was stopped (the server is shutting down; nothing is held any more)."""
        return self._stopped

    @property
    def hung(self) -> int:
        """How many requests are held right now."""
        with self._cond:
            return self._hung

    @property
    def total(self) -> int:
        """How many requests were held since the last ``reset_counters``."""
        with self._cond:
            return self._total

    def hold(self) -> None:
        """Block the calling request until :meth:`release` or :meth:`stop`."""
        with self._cond:
            generation = self._generation
            self._hung += 1
            self._total += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._stopped or self._generation != generation)
            finally:
                self._hung -= 1
                self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, returning early when the server stops."""
        if seconds <= 0:
            return
        with self._cond:
            self._cond.wait_for(lambda: self._stopped, timeout=seconds)

    def wait_for_hung(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` requests are held; False after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._hung >= count, timeout=timeout)

    def release(self) -> int:
        """Let every currently held request go; returns how many were held."""
        with self._cond:
            released = self._hung
            self._generation += 1
            self._cond.notify_all()
            return released

    def reset_counters(self) -> None:
        """Set the total of held requests back to zero (held requests stay held)."""
        with self._cond:
            self._total = 0

    def stop(self) -> None:
        """Release every held request for good: later holds return at once."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


_JOB_FAULT_FIELDS = ("kind", "polls", "fail", "times")


@dataclass
class JobFault:
    """How the next ``times`` asynchronous jobs of a contact ``kind`` behave.

    ``kind`` is ``klaviyo_profiles`` (import job), ``brevo_contacts`` (import process) or
    ``omnisend_contacts`` (batch). The create request itself is answered normally; then the
    job stays running across ``polls`` status polls (default: ``SandboxOptions.contact_job_polls``)
    and finishes complete, or, with ``fail``, finishes as the vendor's failed state (Klaviyo
    ``cancelled``, Brevo ``failed``, Omnisend ``stopped``) having stored nothing.
    """

    kind: str
    polls: int | None = None
    fail: bool = False
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in CONTACT_KINDS:
            raise ValueError(
                f"JobFault.kind must be one of {list(CONTACT_KINDS)}, got {self.kind!r}"
            )
        if self.polls is not None and self.polls < 0:
            raise ValueError("JobFault.polls must be >= 0")
        if self.times < 1:
            raise ValueError("JobFault.times must be >= 1")
        if self.polls is None and not self.fail:
            raise ValueError("a JobFault needs polls or fail")

    @classmethod
    def from_dict(cls, obj: Any) -> JobFault:
        """Build from the JSON accepted by ``POST /_sandbox/job-faults``; ValueError if invalid."""
        if not isinstance(obj, dict):
            raise ValueError("each job fault must be a JSON object")
        unknown = sorted(set(obj) - set(_JOB_FAULT_FIELDS))
        if unknown:
            known = list(_JOB_FAULT_FIELDS)
            raise ValueError(f"unknown job fault fields {unknown}; known: {known}")
        try:
            return cls(
                kind=str(obj.get("kind", "")),
                polls=None if obj.get("polls") is None else int(obj["polls"]),
                fail=bool(obj.get("fail", False)),
                times=int(obj.get("times", 1)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid job fault: {exc}") from None
