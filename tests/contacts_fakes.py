"""An in-memory Klaviyo profile bulk import behind ``httpx.MockTransport`` (unit tests only;
end-to-end tests use the sandbox)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson


class FakeKlaviyo:
    """Jobs finish after ``polls_before_complete`` status requests; profiles whose email is in
    ``refuse`` come back as import errors (matched by identifier)."""

    def __init__(self, polls_before_complete: int = 1) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.refuse: set[str] = set()
        self.polls_before_complete = polls_before_complete
        self.job_bodies: list[dict[str, Any]] = []
        self.cancel_next = False
        self.profile_imports: list[dict[str, Any]] = []

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def sent(self) -> int:
        return sum(len(b["data"]["attributes"]["profiles"]["data"]) for b in self.job_bodies)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        assert request.headers["authorization"].startswith("Klaviyo-API-Key ")
        if request.method == "POST" and path == "/api/profile-bulk-import-jobs":
            body = orjson.loads(request.content)
            self.job_bodies.append(body)
            job_id = f"job{len(self.jobs) + 1}"
            profiles = body["data"]["attributes"]["profiles"]["data"]
            errors: list[dict[str, Any]] = []
            for p in profiles:
                attrs = p["attributes"]
                if attrs.get("email") in self.refuse:
                    errors.append(
                        {
                            "type": "import-error",
                            "id": f"e{len(errors)}",
                            "attributes": {
                                "code": "invalid",
                                "title": "Invalid input",
                                "detail": "refused by the fake",
                                "source": {"pointer": "/data/attributes/email"},
                                "original_payload": attrs,
                            },
                        }
                    )
                    continue
                key = attrs.get("email") or attrs.get("external_id")
                stored = self.profiles.setdefault(key, {})
                stored.update({k: v for k, v in attrs.items() if k != "properties"})
                props = stored.setdefault("properties", {})
                props.update(attrs.get("properties", {}))
                for name in p.get("meta", {}).get("patch_properties", {}).get("unset", []):
                    props.pop(name, None)
            status = "cancelled" if self.cancel_next else "processing"
            self.jobs[job_id] = {
                "status": status,
                "polls": 0,
                "total": len(profiles),
                "errors": errors,
            }
            return httpx.Response(
                202,
                json={
                    "data": {
                        "type": "profile-bulk-import-job",
                        "id": job_id,
                        "attributes": {"status": "queued"},
                    }
                },
            )
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["api", "profile-bulk-import-jobs"]:
            job = self.jobs[parts[2]]
            if len(parts) == 4:
                size = int(request.url.params.get("page[size]", "100"))
                start = int(request.url.params.get("page[cursor]", "0"))
                page = job["errors"][start : start + size]
                nxt = None
                if start + size < len(job["errors"]):
                    nxt = str(request.url.copy_with(query=None)) + (
                        f"?page[size]={size}&page[cursor]={start + size}"
                    )
                return httpx.Response(200, json={"data": page, "links": {"next": nxt}})
            if job["status"] == "processing":
                job["polls"] += 1
                if job["polls"] > self.polls_before_complete:
                    job["status"] = "complete"
            return httpx.Response(
                200,
                json={
                    "data": {
                        "type": "profile-bulk-import-job",
                        "id": parts[2],
                        "attributes": {
                            "status": job["status"],
                            "total_count": job["total"],
                            "completed_count": job["total"] - len(job["errors"]),
                            "failed_count": len(job["errors"]),
                        },
                    }
                },
            )
        if request.method == "POST" and path == "/api/profile-import":
            self.profile_imports.append(orjson.loads(request.content))
            return httpx.Response(200, json={"data": {"type": "profile", "id": "p1"}})
        return httpx.Response(404, json={"errors": [{"detail": f"no route {path}"}]})
