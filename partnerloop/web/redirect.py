"""GET /r/{code}: record the click, answer 302. A bare ASGI handler in front of
FastAPI, because on this path the framework costs several times the work
(see PERF-NOTES.md); everything else goes through FastAPI."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
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


class PreparedLink:
    """A link target with the parts of its answer that do not change per click
    worked out once: the common click (no query parameters) then costs string
    concatenation instead of URL parsing and quoting."""

    __slots__ = ("cookie_name", "cookie_tail", "location_head", "location_tail", "target")

    def __init__(self, target: LinkTarget, *, secure_cookie: bool) -> None:
        self.target = target
        self.cookie_name = f"pl_{target.program_id}".encode("latin-1")
        self.cookie_tail = (
            f"; Max-Age={target.cookie_days * 86400}; Path=/; HttpOnly; SameSite=Lax"
            + ("; Secure" if secure_cookie else "")
        ).encode("latin-1")
        # The destination with the click id in it, quoted as _redirect would, split
        # around a placeholder: ids are [0-9a-z_], which quoting leaves as they are.
        location = _quoted(with_query(target.destination_url, [(CLICK_PARAM, _PLACEHOLDER)]))
        head, _, tail = location.partition(_PLACEHOLDER)
        self.location_head, self.location_tail = head.encode("ascii"), tail.encode("ascii")


_PLACEHOLDER = "plclidplaceholder"


class LinkCache:
    """Code -> prepared link (or None), kept a few seconds so a hot link costs no
    query per click, and a disabled link stops within that time."""

    def __init__(
        self, runtime: Runtime, *, ttl_seconds: float = 5.0, max_entries: int = 100_000
    ) -> None:
        self._runtime = runtime
        self._ttl = ttl_seconds
        self._max = max_entries
        self._secure_cookie = runtime.settings.public_url.startswith("https://")
        self._entries: dict[str, tuple[float, PreparedLink | None]] = {}
        self._loading: dict[str, asyncio.Future[PreparedLink | None]] = {}
        self._limiter = anyio.CapacityLimiter(4)  # not behind the API's thread pool

    def peek(self, code: str) -> PreparedLink | None:
        """The link if it is cached and active; None when it is not cached or not
        found (`get` loads it, or answers None again)."""
        entry = self._entries.get(code)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    async def get(self, code: str) -> PreparedLink | None:
        entry = self._entries.get(code)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._loading.get(code)
        if pending is not None:  # one query per code, however many clicks wait for it
            return await pending
        future: asyncio.Future[PreparedLink | None] = asyncio.get_running_loop().create_future()
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

    def _load(self, code: str) -> PreparedLink | None:
        with self._runtime.sessions() as session:
            target = tracking.resolve_link(session, code)
        return None if target is None else PreparedLink(target, secure_cookie=self._secure_cookie)


_WANTED = {b"user-agent", b"referer", b"cookie", b"x-forwarded-for"}


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The few request headers a click records (the first of each), undecoded."""
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in _WANTED and name not in found:
            found[name] = value
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else _storable(value.decode("latin-1"))


def _storable(text: str) -> str:
    # PostgreSQL's text holds no NUL: one "%00" in a shopper's URL failed the insert
    # of the whole batch, every other shopper's click in it with it.
    return text.replace("\x00", "") if "\x00" in text else text


def _has_cookie(header: bytes | None, name: bytes) -> bool:
    if not header or name not in header:  # the common answer, without parsing
        return False
    for part in header.split(b";"):
        key, sep, _ = part.strip().partition(b"=")
        if sep and key == name:
            return True
    return False


class RedirectApp:
    def __init__(self, runtime: Runtime, writer: ClickWriter, cache: LinkCache) -> None:
        self._runtime = runtime
        self._writer = writer
        self._cache = cache
        self._trust_forwarded = runtime.settings.trust_forwarded_for
        # Bound once: a labelled counter's lookup costs more than the increment.
        self._recorded = metrics.REDIRECTS.labels("recorded")
        self._unrecorded = metrics.REDIRECTS.labels("unrecorded")
        self._not_found = metrics.REDIRECTS.labels("not_found")

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
        link = await self._cache.get(code) if _CODE_RE.match(code) else None
        if link is None or (program_id is not None and link.target.program_id != program_id):
            self._not_found.inc()
            await _plain(
                send, 404, NOT_FOUND_PAGE, [(b"content-type", b"text/html; charset=utf-8")]
            )
            return
        visit = _Visit(link, scope.get("query_string", b""))
        if method == "HEAD":  # link previews and checkers: answer, record nothing
            await _redirect(send, visit.untracked_location(), None)
            return
        headers = _headers(scope.get("headers", ()))
        click = self._click(visit, headers, scope.get("client"))
        location, cookie = self._answer(visit, click, await self._writer.record(click))
        await _redirect(send, location, cookie)

    def click_now(
        self,
        code: str,
        raw_query: bytes,
        raw_headers: Iterable[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        respond: Callable[[bytes], None],
    ) -> bool:
        """The common click (GET of a link already cached) without a coroutine, for
        the HTTP front (web/front.py): queued for the store, and once it is
        committed `respond` gets the 302's header lines. False, with nothing done,
        when it is not that click; it then goes the usual way (serve)."""
        link = self._cache.peek(code) if _CODE_RE.match(code) else None
        if link is None:
            return False
        visit = _Visit(link, raw_query)
        click = self._click(visit, _headers(raw_headers), client)
        committed = self._writer.record_soon(click)
        if committed is None:
            return False

        def committed_then(done: asyncio.Future[tuple[bool, object]]) -> None:
            ok = not done.cancelled() and done.result()[0]
            respond(_redirect_lines(*self._answer(visit, click, ok)))

        committed.add_done_callback(committed_then)
        return True

    def _click(
        self, visit: _Visit, headers: dict[bytes, bytes], client: tuple[str, int] | None
    ) -> ClickRecord:
        target = visit.link.target
        presets, params = target.presets, visit.params
        if params or presets:
            preset = dict(presets)
            subs = tuple(
                (value[: tracking.MAX_SUB_LENGTH] if value else None)
                for value in (params.get(name) or preset.get(name) for name in tracking.SUB_IDS)
            )
        else:
            subs = _NO_SUBS
        return ClickRecord(
            id=tracking.new_click_id(),
            program_id=target.program_id,
            link_id=target.link_id,
            affiliate_id=target.affiliate_id,
            created_at=utcnow(),
            ip=self._client_ip(client, headers),
            user_agent=_text(headers.get(b"user-agent")),
            referrer=_text(headers.get(b"referer")),
            landing_url=visit.destination,
            subs=subs,  # type: ignore[arg-type]
            is_unique=not _has_cookie(headers.get(b"cookie"), visit.link.cookie_name),
        )

    def _answer(
        self, visit: _Visit, click: ClickRecord, committed: bool
    ) -> tuple[bytes, bytes | None]:
        """The redirect's location and cookie, once the click's commit is known."""
        if not committed:
            # The database failed: still send the shopper on, but without a click id,
            # so nothing downstream refers to a click we do not have.
            self._unrecorded.inc()
            return visit.untracked_location(), None
        self._recorded.inc()
        link = visit.link
        click_id = click.id.encode("ascii")
        cookie = link.cookie_name + b"=" + click_id + link.cookie_tail
        if visit.forwarded is None:  # the common click: the prepared answer applies
            return link.location_head + click_id + link.location_tail, cookie
        location = _quoted(
            with_query(visit.destination, [*visit.forwarded, (CLICK_PARAM, click.id)])
        )
        return location.encode(), cookie

    def _client_ip(self, client: tuple[str, int] | None, headers: dict[bytes, bytes]) -> str | None:
        forwarded = headers.get(b"x-forwarded-for")
        if self._trust_forwarded and forwarded:
            return forwarded.decode("latin-1").split(",")[0].strip()
        return client[0] if client else None


class _Visit:
    """Where one click goes: the link, the click's own query parameters, the
    destination (a deep link when allowed) and the parameters passed on to it
    (None for a click without a query: the prepared answer applies)."""

    __slots__ = ("destination", "forwarded", "link", "params")

    def __init__(self, link: PreparedLink, raw_query: bytes) -> None:
        self.link = link
        target = link.target
        self.destination = target.destination_url
        if not raw_query:
            self.params: dict[str, str] = {}
            self.forwarded: list[tuple[str, str]] | None = None
            return
        query = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)
        # What is stored from the query (sub ids, the deep link) is made storable.
        self.params = {key: _storable(value) for key, value in query}
        deep = self.params.get("url")
        if deep:
            # Click-time deep link: only to the program's own domains, never elsewhere.
            self.destination = (
                allowed_destination(deep, list(target.allowed_domains)) or self.destination
            )
        self.forwarded = [(k, v) for k, v in query if k not in _OWN_PARAMS and k != CLICK_PARAM]

    def untracked_location(self) -> bytes:
        """The destination without a click id (HEAD, or a click not stored)."""
        return _quoted(with_query(self.destination, self.forwarded or [])).encode()


_NO_SUBS = (None, None, None, None, None)


def _quoted(location: str) -> str:
    # Percent-encode anything outside ASCII; reserved characters stay as they are.
    return quote(location, safe=_URL_SAFE)


_REDIRECT_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer-when-downgrade"),
    (b"content-length", b"0"),
)
_REDIRECT_LINES = b"".join(name + b": " + value + b"\r\n" for name, value in _REDIRECT_HEADERS)


async def _redirect(send: Send, location: bytes, cookie: bytes | None) -> None:
    headers = [(b"location", location), *_REDIRECT_HEADERS]
    if cookie:
        headers.append((b"set-cookie", cookie))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _redirect_lines(location: bytes, cookie: bytes | None) -> bytes:
    """The headers _redirect sends, as HTTP/1.1 header lines (the HTTP front's).
    Both parts are ASCII without control characters: the location quoted, the
    cookie of ids and fixed text."""
    lines = b"location: " + location + b"\r\n" + _REDIRECT_LINES
    return lines + b"set-cookie: " + cookie + b"\r\n" if cookie else lines


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
