"""The fake CRM: the HubSpot CRM v3 endpoints partnerloop's HubSpot connector
calls, on 127.0.0.1, answering in HubSpot's published shapes.

- POST /crm/v3/objects/contacts/batch/upsert (idProperty email): creates or
  updates each contact, matching e-mails ignoring case as HubSpot does; the
  answer is HubSpot's BatchResponse with every property value as text
  (../shared/fixtures/hubspot/docs_contacts-batch-update_response-example.json).
- POST /crm/v3/objects/contacts/batch/read: the current values (conflict policies).
- A wrong bearer token gets HubSpot's 401.
It records every contact it holds, so the simulator can reconcile, and can be
made unwell on purpose: down (connection refused, or 503) for some seconds,
or answering 429 with HubSpot's rate-limit body and headers (a storm).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
READ_PATH = "/crm/v3/objects/contacts/batch/read"
OUTAGE_MODES = ("refused", "503")


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rate_limit_body(policy: str = "SECONDLY") -> dict[str, str]:
    """HubSpot's 429 body (../shared/fixtures/hubspot/429_daily_docs-example.json
    is the DAILY one; the per-interval limit says SECONDLY and "secondly")."""
    return {
        "status": "error",
        "message": f"You have reached your {policy.lower()} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }


@dataclass
class Contact:
    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str
    first_seen: float  # time.time() when it was created here
    writes: int = 1


@dataclass
class CrmCalls:
    by_status: dict[int, int] = field(default_factory=dict)
    refused_seconds: float = 0.0  # how long the port was closed

    def count(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1


class FakeHubSpot:
    def __init__(self, *, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.host = host
        self.contacts: list[Contact] = []
        self.calls = CrmCalls()
        self._by_email: dict[str, Contact] = {}
        self._lock = threading.Lock()
        self._next_id = 1001
        self._outage_until = 0.0
        self._outage_mode = "503"
        self._storm_until = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.port = self._listen(port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------

    def _listen(self, port: int) -> int:
        server = ThreadingHTTPServer((self.host, port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="fake-crm", daemon=True
        )
        self._thread.start()
        return int(server.server_address[1])

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._close()

    # --- being unwell on purpose --------------------------------------------------------

    def outage(self, seconds: float, *, mode: str = "refused") -> None:
        """Down for `seconds` from now: the port closed (connection refused) or 503s."""
        if mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES}")
        if mode == "503":
            with self._lock:
                self._outage_mode, self._outage_until = mode, time.monotonic() + seconds
            return
        self._close()
        self.calls.refused_seconds += seconds
        self._timer = threading.Timer(seconds, self._listen, args=(self.port,))
        self._timer.daemon = True
        self._timer.start()

    def storm(self, seconds: float) -> None:
        """Every call answered 429 (HubSpot's per-interval limit) for `seconds` from now."""
        with self._lock:
            self._storm_until = time.monotonic() + seconds

    def is_up(self) -> bool:
        with self._lock:
            return self._server is not None and time.monotonic() >= self._outage_until

    # --- what it holds ------------------------------------------------------------------

    def snapshot(self) -> list[Contact]:
        with self._lock:
            return [
                Contact(
                    c.id, dict(c.properties), c.created_at, c.updated_at, c.first_seen, c.writes
                )
                for c in self.contacts
            ]

    def store(self, email: str, properties: dict[str, str]) -> Contact:
        """Create or update one contact (called with the lock held). A test double
        overrides this to lose a contact and see the reconciliation catch it."""
        key = email.strip().lower()
        now = _now_text()
        found = self._by_email.get(key)
        if found is None:
            found = Contact(
                id=str(self._next_id),
                properties={**properties, "email": key},
                created_at=now,
                updated_at=now,
                first_seen=time.time(),
            )
            self._next_id += 1
            self.contacts.append(found)
            self._by_email[key] = found
            return found
        found.properties.update(properties)
        found.properties["email"] = key
        found.updated_at = now
        found.writes += 1
        return found

    # --- answers ------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        with self._lock:
            if time.monotonic() < self._outage_until:
                return _Reply(503, {"status": "error", "message": "Service Unavailable"})
            if time.monotonic() < self._storm_until:
                return _Reply(
                    429,
                    rate_limit_body(),
                    {
                        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                        "X-HubSpot-RateLimit-Max": "100",
                        "X-HubSpot-RateLimit-Remaining": "0",
                    },
                )
        if headers.get("authorization") != f"Bearer {self.token}":
            return _Reply(
                401,
                {
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "correlationId": str(uuid.uuid4()),
                    "category": "INVALID_AUTHENTICATION",
                },
            )
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _Reply(400, {"status": "error", "message": "Invalid input JSON"})
        if method == "POST" and path == UPSERT_PATH:
            return self._upsert(request)
        if method == "POST" and path == READ_PATH:
            return self._read(request)
        return _Reply(404, {"status": "error", "message": f"No route for {method} {path}"})

    def _upsert(self, request: dict[str, Any]) -> _Reply:
        started = _now_text()
        results = []
        with self._lock:
            for entry in request.get("inputs") or []:
                properties = {k: str(v) for k, v in (entry.get("properties") or {}).items()}
                email = str(entry.get("id") or properties.get("email") or "")
                if entry.get("idProperty") != "email" or not email:
                    return _Reply(
                        400,
                        {
                            "status": "error",
                            "message": "Upsert inputs need idProperty email and an id.",
                            "category": "VALIDATION_ERROR",
                        },
                    )
                contact = self.store(email, properties)
                results.append(
                    {
                        "id": contact.id,
                        "properties": dict(contact.properties),
                        "createdAt": contact.created_at,
                        "updatedAt": contact.updated_at,
                        "archived": False,
                        "new": contact.writes == 1,
                    }
                )
        return _Reply(
            200,
            {
                "status": "COMPLETE",
                "results": results,
                "requestedAt": started,
                "startedAt": started,
                "completedAt": _now_text(),
                "links": {},
            },
        )

    def _read(self, request: dict[str, Any]) -> _Reply:
        wanted = [str(p) for p in request.get("properties") or []]
        results = []
        with self._lock:
            for entry in request.get("inputs") or []:
                contact = self._by_email.get(str(entry.get("id") or "").lower())
                if contact is None:
                    continue
                results.append(
                    {
                        "id": contact.id,
                        "properties": {
                            name: contact.properties.get(name)
                            for name in wanted
                            if name in contact.properties
                        },
                        "createdAt": contact.created_at,
                        "updatedAt": contact.updated_at,
                        "archived": False,
                    }
                )
        now = _now_text()
        return _Reply(
            200, {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        )


@dataclass
class _Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _handler(crm: FakeHubSpot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: a connection per call, so closing the port refuses every call
        # at once (no kept-alive connection outlives an outage).
        protocol_version = "HTTP/1.0"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = crm.answer(self.command, self.path.split("?")[0], headers, body)
            with crm._lock:
                crm.calls.count(reply.status)
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # contacts carry personal data: nothing is logged

    return Handler
