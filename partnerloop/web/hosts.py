"""Which site a request is for, by its Host (white label).

- An installation host (the host of PARTNERLOOP_PUBLIC_URL, one in
  PARTNERLOOP_ALLOWED_HOSTS, or no Host header at all): the whole app.
- A program's portal host ("partners.brand.example"): that program's portal
  at / and the static files; nothing else.
- A program's tracking host ("go.brand.example"): that program's links at
  /{code}; nothing else.
- Any other host: 404, so a stray DNS name never shows the installation.

The installation check is a set lookup on the raw header bytes: the click path
on the main host costs no query and next to no time. Program hosts come from
the database and stay in memory for HOST_TTL_SECONDS; a change of hosts
committed in this process drops that memory at once (programs.domains.changes()),
other processes see it within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from partnerloop.core.settings import Settings
from partnerloop.programs import domains
from partnerloop.runtime import Runtime
from partnerloop.web.redirect import Scope, Send

HOST_TTL_SECONDS = 30.0
# Raw Host values (with their ports) remembered as "installation"; bounded so a
# client sending many different ports cannot grow it without end.
MAX_KNOWN_RAW = 1024
UNKNOWN_HOST_PAGE = b"Not found: this host is not served here."
_REDIRECT_HEADERS = (b"location", b"hx-redirect", b"hx-location")


@dataclass(frozen=True)
class HostTarget:
    program_id: str
    purpose: str  # portal | tracking


class HostCache:
    """host -> the program it belongs to (or None), kept HOST_TTL_SECONDS."""

    def __init__(
        self, runtime: Runtime, *, ttl_seconds: float = HOST_TTL_SECONDS, max_entries: int = 10_000
    ) -> None:
        self._runtime = runtime
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, HostTarget | None]] = {}
        self._version = domains.changes()
        self._loading: dict[str, asyncio.Future[HostTarget | None]] = {}
        self._limiter = anyio.CapacityLimiter(2)  # not behind the API's thread pool

    async def get(self, host: str) -> HostTarget | None:
        version = domains.changes()
        if version != self._version:
            self._entries.clear()
            self._version = version
        entry = self._entries.get(host)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._loading.get(host)
        if pending is not None:  # one query per host, however many requests wait for it
            return await pending
        future: asyncio.Future[HostTarget | None] = asyncio.get_running_loop().create_future()
        self._loading[host] = future
        try:
            target = await anyio.to_thread.run_sync(self._load, host, limiter=self._limiter)
            # Hosts changed while we read: the answer may be the old one; don't keep it.
            if domains.changes() == version:
                if len(self._entries) >= self._max:
                    self._entries.clear()
                self._entries[host] = (time.monotonic() + self._ttl, target)
            future.set_result(target)
            return target
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._loading[host]

    def _load(self, host: str) -> HostTarget | None:
        with self._runtime.sessions() as session:
            row = domains.lookup(session, host)
            return HostTarget(row.program_id, row.purpose) if row is not None else None


class HostRouting:
    def __init__(self, settings: Settings, cache: HostCache) -> None:
        self.installation_hosts = settings.installation_hosts
        self.trusts_forwarded = settings.trust_forwarded_for
        # Raw header values seen to be installation hosts ("127.0.0.1:8000").
        self.known_raw: set[bytes] = set()
        self.cache = cache

    def raw_host(self, scope: Scope) -> bytes | None:
        """The Host header as sent (X-Forwarded-Host instead behind a trusted proxy)."""
        return self.raw_host_in(scope.get("headers", ()))

    def raw_host_in(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
        """raw_host of a request's (lower-cased name, value) header pairs."""
        host = None
        for name, value in headers:
            if name == b"host":
                host = value
                if not self.trusts_forwarded:
                    break
            elif name == b"x-forwarded-host" and self.trusts_forwarded:
                return bytes(value).split(b",")[0].strip()
        return host

    def is_installation(self, raw: bytes | None) -> bool:
        if raw is None or raw in self.known_raw:
            return True
        host = domains.host_of_header(raw.decode("latin-1"))
        if host is None or host in self.installation_hosts:
            if len(self.known_raw) < MAX_KNOWN_RAW:
                self.known_raw.add(raw)
            return True
        return False

    async def target(self, raw: bytes) -> HostTarget | None:
        host = domains.host_of_header(raw.decode("latin-1"))
        return await self.cache.get(host) if host else None


def portal_path(program_id: str, path: str) -> str:
    """Where a path on a portal host lives in the app: "/" -> "/portal/{id}/"."""
    return f"/portal/{program_id}{path}"


def strip_portal_prefix(send: Send, program_id: str) -> Send:
    """On a portal host the portal lives at /: a redirect the portal answers with
    its long form (/portal/{id}/..., or an absolute URL on this host, as a
    trailing-slash redirect is) is sent on in the short one."""
    prefix = f"/portal/{program_id}".encode()

    def short(value: bytes) -> bytes:
        authority = b""
        if value.startswith((b"http://", b"https://")):
            start = value.index(b"//") + 2
            slash = value.find(b"/", start)
            if slash < 0:
                return value
            authority, value = value[:slash], value[slash:]
        if value == prefix or value.startswith((prefix + b"/", prefix + b"?")):
            value = value[len(prefix) :]
            value = value if value.startswith(b"/") else b"/" + value
        return authority + value

    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, short(value) if name.lower() in _REDIRECT_HEADERS else value)
                for name, value in message.get("headers") or ()
            ]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(UNKNOWN_HOST_PAGE)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": UNKNOWN_HOST_PAGE})
