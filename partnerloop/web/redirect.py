"""GET /r/{code}: record the click, answer 302. A bare ASGI handler in front of
FastAPI, because on this path the framework costs several times the work
(see PERF-NOTES.md); everything else goes through FastAPI."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

import anyio
import anyio.to_thread

from partnerloop.core.clock import utcnow
from partnerloop.runtime import Runtime
from partnerloop.tracking import service as tracking
from partnerloop.tracking.destinations import allowed_destination, with_query
from partnerloop.tracking.service import ClickRecord, LinkTarget
from partnerloop.web import metrics
from partnerloop.web.clickwriter import ClickWriter

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/r/"
CLICK_PARAM = "plclid"
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OWN_PARAMS = {"url", *tracking.SUB_IDS}
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"

NOT_FOUND_PAGE = (
    b"<!doctype html><html><head><meta charset=utf-8><title>Link not found</title></head>"
    b"<body><h1>Link not found</h1><p>This link does not exist or is no longer active.</p></body></html>"
)


class LinkCache:
    """Code -> link target (or None), kept a few seconds so a hot link costs no
    query per click, and a disabled link stops within that time."""

    def __init__(
        self, runtime: Runtime, *, ttl_seconds: float = 5.0, max_entries: int = 100_000
    ) -> None:
        self._runtime = runtime
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, LinkTarget | None]] = {}
        self._loading: dict[str, asyncio.Future[LinkTarget | None]] = {}
        self._limiter = anyio.CapacityLimiter(4)  # not behind the API's thread pool

    async def get(self, code: str) -> LinkTarget | None:
        entry = self._entries.get(code)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._loading.get(code)
        if pending is not None:  # one query per code, however many clicks wait for it
            return await pending
        future: asyncio.Future[LinkTarget | None] = asyncio.get_running_loop().create_future()
        self._loading[code] = future
        try:
            target = await anyio.to_thread.run_sync(self._load, code, limiter=self._limiter)
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[code] = (time.monotonic() + self._ttl, target)
            future.set_result(target)
            return target
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._loading[code]

    def _load(self, code: str) -> LinkTarget | None:
        with self._runtime.sessions() as session:
            return tracking.resolve_link(session, code)


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])
    }


def _cookies(header: str) -> dict[str, str]:
    jar = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            jar[name] = value
    return jar


class RedirectApp:
    def __init__(self, runtime: Runtime, writer: ClickWriter, cache: LinkCache) -> None:
        self._runtime = runtime
        self._writer = writer
        self._cache = cache
        self._secure_cookie = runtime.settings.public_url.startswith("https://")
        self._trust_forwarded = runtime.settings.trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve(scope, send, scope["path"][len(PREFIX) :])

    async def serve(
        self, scope: Scope, send: Send, code: str, *, program_id: str | None = None
    ) -> None:
        """The click on link `code`. With program_id (a program's own tracking host),
        a link of any other program is not found there."""
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"Method not allowed", [(b"allow", b"GET, HEAD")])
            return
        target = await self._cache.get(code) if _CODE_RE.match(code) else None
        if target is None or (program_id is not None and target.program_id != program_id):
            metrics.REDIRECTS.labels("not_found").inc()
            await _plain(
                send, 404, NOT_FOUND_PAGE, [(b"content-type", b"text/html; charset=utf-8")]
            )
            return

        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        params = dict(query)
        destination = target.destination_url
        deep = params.get("url")
        if deep:
            # Click-time deep link: only to the program's own domains, never elsewhere.
            destination = allowed_destination(deep, list(target.allowed_domains)) or destination
        forwarded = [(k, v) for k, v in query if k not in _OWN_PARAMS and k != CLICK_PARAM]
        if method == "HEAD":  # link previews and checkers: answer, record nothing
            await _redirect(send, with_query(destination, forwarded), None)
            return

        headers = _headers(scope)
        presets = dict(target.presets)
        subs = tuple((params.get(name) or presets.get(name) or None) for name in tracking.SUB_IDS)
        subs = tuple(s[: tracking.MAX_SUB_LENGTH] if s else None for s in subs)
        cookie_name = f"pl_{target.program_id}"
        click = ClickRecord(
            id=tracking.new_click_id(),
            program_id=target.program_id,
            link_id=target.link_id,
            affiliate_id=target.affiliate_id,
            created_at=utcnow(),
            ip=self._client_ip(scope, headers),
            user_agent=headers.get("user-agent"),
            referrer=headers.get("referer"),
            landing_url=destination,
            subs=subs,  # type: ignore[arg-type]
            is_unique=cookie_name not in _cookies(headers.get("cookie", "")),
        )
        if await self._writer.record(click):
            metrics.REDIRECTS.labels("recorded").inc()
            cookie = (
                f"{cookie_name}={click.id}; Max-Age={target.cookie_days * 86400}; Path=/; HttpOnly; SameSite=Lax"
                + ("; Secure" if self._secure_cookie else "")
            )
            await _redirect(
                send, with_query(destination, [*forwarded, (CLICK_PARAM, click.id)]), cookie
            )
        else:
            # The database failed: still send the shopper on, but without a click id,
            # so nothing downstream refers to a click we do not have.
            metrics.REDIRECTS.labels("unrecorded").inc()
            await _redirect(send, with_query(destination, forwarded), None)

    def _client_ip(self, scope: Scope, headers: dict[str, str]) -> str | None:
        if self._trust_forwarded and headers.get("x-forwarded-for"):
            return headers["x-forwarded-for"].split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else None


async def _redirect(send: Send, location: str, cookie: str | None) -> None:
    headers = [
        # Percent-encode anything outside ASCII; reserved characters stay as they are.
        (b"location", quote(location, safe=_URL_SAFE).encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer-when-downgrade"),
        (b"content-length", b"0"),
    ]
    if cookie:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _plain(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    if not any(name == b"content-type" for name, _ in extra):
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
