"""HTTP plumbing: a threaded HTTP/1.1 keep-alive server on one port for all six endpoints,
fault injection, recording, and the ``/_sandbox/`` control endpoints.

Request pipeline for a vendor path: read the body (Content-Length or chunked) → global latency →
take a matching fault (without ``after_process`` it answers instead of the vendor) →
authenticate → rate limit (only authenticated requests count) → vendor handler → store the
accepted events → rate-limit headers → answer (or let an ``after_process`` fault spoil it).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import orjson

from connector.sandbox import brevo_contacts
from connector.sandbox._shared import JSON, Reply, json_reply
from connector.sandbox.contacts import CONTACT_KINDS
from connector.sandbox.faults import Fault, FaultQueue, HangGate, JobFault
from connector.sandbox.omnisend import SchemaRegistry
from connector.sandbox.options import KINDS, POLL_KINDS, SandboxOptions
from connector.sandbox.ratelimit import Decision, FixedWindowLimiter
from connector.sandbox.recorder import Recorder, RequestRecord
from connector.sandbox.routes import Context, Endpoint, resolve

_log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"


class _BadFraming(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    sandbox: SandboxServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | ValueError):
            return  # the client went away, or an injected reset closed the socket
        _log.error("sandbox: unhandled error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "connector-sandbox"
    sys_version = ""
    # Headers and body leave in one write (flushed after each request) and without Nagle:
    # two small writes would otherwise meet the client's delayed ACK and stall ~40 ms.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def _sandbox(self) -> SandboxServer:
        return cast(_HTTPServer, self.server).sandbox

    def setup(self) -> None:
        super().setup()
        self._sandbox()._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sandbox()._untrack(self.connection)

    def handle_expect_100(self) -> bool:
        # The buffered wfile would otherwise hold the interim 100 until the final answer.
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def log_message(self, format: str, *args: Any) -> None:
        return  # no per-request stderr lines

    def _dispatch(self) -> None:
        self._sandbox()._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class SandboxServer:
    """A strict local fake of the vendor event endpoints and the contact APIs, on one port.

    Binds on construction (``port=0`` picks a free port); :meth:`start` (or ``with``) serves in
    a daemon thread; :meth:`stop` releases held requests and closes every connection.
    """

    def __init__(
        self, options: SandboxOptions | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.options = options or SandboxOptions()
        self._recorder = Recorder(self.options.request_log_limit)
        self._faults = FaultQueue()
        self._gate = HangGate()
        self._ctx = Context(self.options, SchemaRegistry())
        self._ctx.contacts.clock = self.options.wall_clock
        self._limiters: dict[str, FixedWindowLimiter] = {}
        for kind in (*KINDS, *POLL_KINDS):
            windows = self.options.windows_for(kind)
            if windows:
                self._limiters[kind] = FixedWindowLimiter(windows, self.options.clock)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.sandbox = self

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port the server listens on (chosen by the OS when created with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The root every destination's ``base_url`` points at, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Serve on a daemon thread (once; a second call does nothing); returns the server."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.01},
                name=f"sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held (hang/delay) requests are let go and connections closed."""
        if self._stopped:
            return
        self._stopped = True
        self._gate.stop()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test API ----------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies to the next request(s) matching its path."""
        self._faults.push(*faults)

    def inject_job(self, *faults: JobFault) -> None:
        """Plan how the next contact job(s) of a kind behave (polls before done, failure)."""
        self._ctx.contacts.plan(*faults)

    def contacts(self, kind: str) -> list[dict[str, Any]]:
        """Stored profiles of a contact kind (what finished jobs and creates applied), each
        with a sandbox ``id``; KeyError if the kind is unknown."""
        return self._ctx.contacts.contacts(kind)

    def contact(self, kind: str, identifier: str) -> dict[str, Any] | None:
        """The stored profile holding ``identifier`` (email, phone, external id ...), or None."""
        return self._ctx.contacts.find(kind, identifier)

    def edit_contact(
        self,
        kind: str,
        identifier: str,
        changes: dict[str, Any] | None = None,
        *,
        delete: bool = False,
    ) -> dict[str, Any] | None:
        """Change a stored profile "at the vendor" (its last-change time becomes now) or
        ``delete`` it; None when no profile holds ``identifier`` (``ContactStore.edit``)."""
        return self._ctx.contacts.edit(kind, identifier, changes, delete=delete)

    def list_members(self, kind: str, list_id: str | int) -> list[dict[str, Any]]:
        """Stored profiles of a contact kind in one list (Klaviyo ``lists``, Brevo ``listIds``)."""
        return self._ctx.contacts.list_members(kind, str(list_id))

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Accepted events of one kind, as received, in arrival order (KeyError if unknown)."""
        return self._recorder.events(kind)

    def bodies(self) -> list[tuple[str, bytes]]:
        """(path, raw body) of every vendor request, in arrival order; empty unless
        ``SandboxOptions.keep_bodies``."""
        return self._recorder.bodies()

    @property
    def requests(self) -> list[RequestRecord]:
        """The vendor request log: (method, path, status, events, time)."""
        return self._recorder.requests()

    def stats(self) -> dict[str, Any]:
        """Counters: requests, by_status, status_429, rate_limited, resets, faults_applied,
        requests_by_kind, events, rejected_events, deduplicated, hangs, hung_now,
        faults_pending, omnisend_schemas, contacts (per contact kind: stored, created,
        updated, jobs, jobs_running, jobs_done, jobs_failed, item_errors, plans_pending)."""
        out = self._recorder.stats()
        out["hangs"] = self._gate.total
        out["hung_now"] = self._gate.hung
        out["faults_pending"] = self._faults.pending()
        out["omnisend_schemas"] = self._ctx.schemas.snapshot()
        out["contacts"] = self._ctx.contacts.snapshot()
        return out

    def wait_for_hang(self, timeout: float = 10.0, count: int = 1) -> bool:
        """True once at least ``count`` requests are being held by a hang fault."""
        return self._gate.wait_for_hung(count, timeout)

    def release(self) -> int:
        """Let every held request continue; returns how many were held."""
        return self._gate.release()

    def reset(self) -> None:
        """Forget events, logs, counters, schemas, dedup keys, rate windows and pending faults;
        held requests are released."""
        self._faults.clear()
        self._gate.release()
        self._gate.reset_counters()
        self._recorder.clear()
        self._ctx.schemas.clear()
        self._ctx.contacts.clear()
        for limiter in self._limiters.values():
            limiter.reset()

    # -- connections -------------------------------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(conn)

    # -- request handling --------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        path = urlsplit(h.path).path
        try:
            body = self._read_body(h)
        except _BadFraming as exc:
            h.close_connection = True
            self._send(h, json_reply(exc.status, {"error": str(exc)}))
            return
        if path.startswith(CONTROL_PREFIX):
            self._send(h, self._control(h.command, path[len(CONTROL_PREFIX) :], body))
            return
        query = dict(parse_qsl(urlsplit(h.path).query, keep_blank_values=True))
        endpoint = resolve(h.command, path, query)
        if isinstance(endpoint, Reply):
            self._send(h, endpoint)
            return
        self._vendor(h, path, endpoint, body)

    def _read_body(self, h: _Handler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(h)
        raw = h.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise _BadFraming(400, "invalid Content-Length") from None
        if length < 0:
            raise _BadFraming(400, "invalid Content-Length")
        if length > self.options.max_body_bytes:
            raise _BadFraming(413, "request body too large for the sandbox")
        return h.rfile.read(length)

    def _read_chunked(self, h: _Handler) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = h.rfile.readline(1024)
            try:
                chunk = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadFraming(400, "invalid chunked encoding") from None
            if chunk == 0:
                while h.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            size += chunk
            if size > self.options.max_body_bytes:
                raise _BadFraming(413, "request body too large for the sandbox")
            parts.append(h.rfile.read(chunk))
            h.rfile.readline(8)

    def _vendor(self, h: _Handler, path: str, endpoint: Endpoint, body: bytes) -> None:
        clock = self.options.clock
        started = clock()
        if self.options.keep_bodies:
            self._recorder.keep_body(path, body)
        if self.options.latency_s:
            self._gate.sleep(self.options.latency_s)
        fault = self._faults.take(path)
        if fault is not None:
            self._recorder.count_fault()
            if not fault.after_process and self._apply_fault(h, path, endpoint, fault, started):
                return
        reply = self._process(endpoint, h, body)
        if (
            fault is not None
            and fault.after_process
            and self._apply_fault(h, path, endpoint, fault, started, reply.event_count)
        ):
            return
        self._recorder.log(h.command, path, reply.status, reply.event_count, started)
        self._send(h, reply)

    def _process(self, endpoint: Endpoint, h: _Handler, body: bytes) -> Reply:
        limiter = self._limiters.get(endpoint.kind)
        decision: Decision | None = None
        try:
            denied = endpoint.authenticate(h.headers, self.options)
            if denied is not None:
                reply = denied
                decision = limiter.peek() if limiter else None
            else:
                decision = limiter.acquire() if limiter else None
                if decision is not None and not decision.allowed:
                    reply = endpoint.throttled(decision)
                else:
                    reply = endpoint.handle(body, h.headers, self._ctx)
        except Exception:  # noqa: BLE001 — a handler bug is a 500, never a dead server
            _log.exception("sandbox: handler for %s failed", endpoint.kind)
            reply = json_reply(500, {"error": "sandbox handler crashed; see the sandbox log"})
        if decision is not None and not reply.throttled:
            reply.headers.update(endpoint.rate_headers(decision))
        self._recorder.commit(endpoint.kind, reply)
        return reply

    def _apply_fault(
        self,
        h: _Handler,
        path: str,
        endpoint: Endpoint,
        fault: Fault,
        started: float,
        events: int = 0,
    ) -> bool:
        """Play a fault; True when it answered (or dropped) the request itself."""
        if fault.delay_s > 0:
            self._gate.sleep(fault.delay_s)
        if fault.hang:
            self._gate.hold()
        if self._gate.stopped or fault.reset:
            self._recorder.log(h.command, path, 0, events, started)
            self._abort(h)
            return True
        if fault.status is None:
            return False
        body = fault.body_bytes()
        if body is None:
            reply = endpoint.fault_reply(fault.status)
        else:
            reply = Reply(fault.status, body, fault.content_type or JSON)
        if fault.content_type is not None:
            reply.content_type = fault.content_type
        reply.headers.update(fault.headers)
        self._recorder.log(h.command, path, reply.status, events, started)
        self._send(h, reply)
        return True

    @staticmethod
    def _abort(h: _Handler) -> None:
        """Drop the connection with a TCP reset and no response."""
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for closeable in (h.rfile, h.wfile, h.connection):
            with contextlib.suppress(OSError):
                closeable.close()

    @staticmethod
    def _send(h: _Handler, reply: Reply) -> None:
        status = reply.status
        body = reply.body
        h.send_response(status)
        if status == 204 or status == 304 or status < 200:
            body = b""  # RFC 9110: no body and no Content-Length
        else:
            if body and reply.content_type:
                h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if h.close_connection:
            h.send_header("Connection", "close")
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)
        h.wfile.flush()

    # -- control endpoints -------------------------------------------------------------------

    def _control(self, method: str, route: str, body: bytes) -> Reply:
        if method == "GET":
            if route == "stats":
                return json_reply(200, self.stats())
            if route == "health":
                return json_reply(200, {"ok": True})
            if route == "requests":
                return json_reply(200, [r._asdict() for r in self.requests])
            if route.startswith("reports/"):
                process_id, _, name = route[len("reports/") :].partition("/")
                csv = brevo_contacts.report_csv(
                    self._ctx.contacts, process_id, name.removesuffix(".csv")
                )
                if csv is None:
                    return json_reply(404, {"error": f"no report {route}"})
                return Reply(200, csv, "text/csv")
            if route.startswith("lists/"):
                kind, _, list_id = route[len("lists/") :].partition("/")
                if kind not in CONTACT_KINDS or not list_id:
                    return json_reply(
                        404,
                        {"error": "use /_sandbox/lists/<kind>/<list id>", "kinds": CONTACT_KINDS},
                    )
                return json_reply(200, self.list_members(kind, list_id))
            if route.startswith("contacts/"):
                kind = route[len("contacts/") :]
                if kind not in CONTACT_KINDS:
                    return json_reply(
                        404, {"error": f"unknown contact kind {kind!r}", "kinds": CONTACT_KINDS}
                    )
                return json_reply(200, self.contacts(kind))
            if route.startswith("events/"):
                kind = route[len("events/") :]
                if kind not in KINDS:
                    return json_reply(404, {"error": f"unknown kind {kind!r}", "kinds": KINDS})
                return json_reply(200, self.events(kind))
        elif method == "POST":
            if route == "reset":
                self.reset()
                return json_reply(200, {"ok": True})
            if route == "release":
                return json_reply(200, {"released": self.release()})
            if route == "faults":
                return self._control_faults(body)
            if route == "job-faults":
                return self._control_job_faults(body)
            if route.startswith("contacts/") and route.endswith("/edit"):
                return self._control_edit(route[len("contacts/") : -len("/edit")], body)
        return json_reply(404, {"error": f"no control endpoint {method} /_sandbox/{route}"})

    def _control_faults(self, body: bytes) -> Reply:
        try:
            raw = orjson.loads(body)
            items = raw if isinstance(raw, list) else [raw]
            faults = [Fault.from_dict(item) for item in items]
        except (orjson.JSONDecodeError, ValueError) as exc:
            return json_reply(400, {"error": str(exc)})
        self.inject(*faults)
        return json_reply(200, {"queued": len(faults)})

    def _control_job_faults(self, body: bytes) -> Reply:
        try:
            raw = orjson.loads(body)
            items = raw if isinstance(raw, list) else [raw]
            faults = [JobFault.from_dict(item) for item in items]
        except (orjson.JSONDecodeError, ValueError) as exc:
            return json_reply(400, {"error": str(exc)})
        self.inject_job(*faults)
        return json_reply(200, {"queued": len(faults)})

    def _control_edit(self, kind: str, body: bytes) -> Reply:
        """``POST /_sandbox/contacts/<kind>/edit`` ``{"identifier": ..., "changes": {...}}`` or
        ``{"identifier": ..., "delete": true}``: a change made at the vendor."""
        if kind not in CONTACT_KINDS:
            return json_reply(
                404, {"error": f"unknown contact kind {kind!r}", "kinds": CONTACT_KINDS}
            )
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return json_reply(400, {"error": str(exc)})
        ok = isinstance(raw, dict) and isinstance(raw.get("identifier"), str)
        if not ok or not isinstance(raw.get("changes", {}), dict):
            return json_reply(400, {"error": 'use {"identifier": "...", "changes": {...}}'})
        found = self.edit_contact(
            kind, raw["identifier"], raw.get("changes"), delete=raw.get("delete") is True
        )
        if found is None:
            return json_reply(404, {"error": "no contact holds that identifier"})
        return json_reply(200, found)


def serve(port: int, host: str = "127.0.0.1", options: SandboxOptions | None = None) -> None:
    """Run the sandbox in the foreground until Ctrl-C or SIGTERM."""
    server = SandboxServer(options, host=host, port=port)
    stop = threading.Event()

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    server.start()
    o = server.options
    print(
        f"Sandbox listening on {server.url} — keys: Brevo api-key={o.brevo_api_keys[0]}, "
        f"Brevo ma-key={o.brevo_ma_keys[0]}, Omnisend Bearer={o.omnisend_bearer_tokens[0]}, "
        f"Omnisend X-API-KEY={o.omnisend_api_keys[0]}, Klaviyo-API-Key={o.klaviyo_api_keys[0]}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
