"""Thread-safe record of what the sandbox accepted and answered."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Hashable
from typing import Any, NamedTuple

from connector.sandbox._shared import Reply
from connector.sandbox.options import KINDS


class RequestRecord(NamedTuple):
    """One vendor request. ``status`` 0 means the connection was reset without an answer.
    Header values (credentials) are never recorded."""

    method: str
    path: str
    status: int
    events: int
    time: float


class Recorder:
    """Accepted events per kind in arrival order, dedup sets, the request log and counters."""

    def __init__(self, log_limit: int) -> None:
        self._lock = threading.Lock()
        self._log_limit = log_limit
        self._init()

    def _init(self) -> None:
        self._events: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        self._seen: dict[str, set[Hashable]] = {kind: set() for kind in KINDS}
        self._accepted: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._deduplicated: Counter[str] = Counter()
        self._requests_by_kind: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._rate_limited = 0
        self._faults = 0
        self._requests = 0
        self._log: deque[RequestRecord] = deque(maxlen=self._log_limit)
        self._bodies: list[tuple[str, bytes]] = []

    def commit(self, kind: str, reply: Reply) -> None:
        """Store the events a reply accepted, dropping cross-request duplicates."""
        with self._lock:
            self._requests_by_kind[kind] += 1
            if reply.throttled:
                self._rate_limited += 1
            if reply.sink_count:
                self._accepted[kind] += reply.sink_count
                return
            if kind not in self._events:  # status polls record no items
                return
            stored = self._events[kind]
            seen = self._seen[kind]
            keys = reply.dedup_keys
            kept = 0
            for index, event in enumerate(reply.events):
                key = keys[index] if keys is not None else None
                if key is not None:
                    if key in seen:
                        self._deduplicated[kind] += 1
                        continue
                    seen.add(key)
                stored.append(event)
                kept += 1
            self._accepted[kind] += kept
            if reply.status < 500 and reply.event_count:
                self._rejected[kind] += reply.event_count - len(reply.events)

    def log(self, method: str, path: str, status: int, events: int, at: float) -> None:
        with self._lock:
            self._requests += 1
            self._by_status[status] += 1
            self._log.append(RequestRecord(method, path, status, events, at))

    def keep_body(self, path: str, body: bytes) -> None:
        with self._lock:
            self._bodies.append((path, body))

    def bodies(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._bodies)

    def count_fault(self) -> None:
        with self._lock:
            self._faults += 1

    def events(self, kind: str) -> list[dict[str, Any]]:
        if kind not in self._events:
            raise KeyError(f"unknown event kind {kind!r}; known: {list(KINDS)}")
        with self._lock:
            return list(self._events[kind])

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters (status keys are strings)."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "status_429": self._by_status.get(429, 0),
                "rate_limited": self._rate_limited,
                "resets": self._by_status.get(0, 0),
                "faults_applied": self._faults,
                "requests_by_kind": {k: self._requests_by_kind[k] for k in KINDS},
                "events": {k: self._accepted[k] for k in KINDS},
                "rejected_events": {k: self._rejected[k] for k in KINDS},
                "deduplicated": {k: self._deduplicated[k] for k in KINDS},
            }

    def clear(self) -> None:
        with self._lock:
            self._init()
