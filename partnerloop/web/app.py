"""The one place that assembles the web app: every router is listed here.

The outer ASGI callable routes by Host (a program's own portal and tracking
domains, see web/hosts.py), sends /r/{code} to the hand-written redirect
handler, POST /hooks/{connector_id} to the hand-written webhook handler, and
everything else to FastAPI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from partnerloop import __version__
from partnerloop.core import heap
from partnerloop.runtime import Runtime
from partnerloop.sync.pacing import Pacer, share_of_nice
from partnerloop.web import health, hooks, postback, problems
from partnerloop.web.admin import account as admin_account
from partnerloop.web.admin import affiliates as admin_affiliates
from partnerloop.web.admin import audit as admin_audit
from partnerloop.web.admin import auth as admin_auth
from partnerloop.web.admin import commissions as admin_commissions
from partnerloop.web.admin import connectors as admin_connectors
from partnerloop.web.admin import dashboard as admin_dashboard
from partnerloop.web.admin import deliveries as admin_deliveries
from partnerloop.web.admin import password as admin_password
from partnerloop.web.admin import program as admin_program
from partnerloop.web.admin import report as admin_report
from partnerloop.web.api import (
    affiliates,
    commissions,
    connectors,
    conversions,
    deliveries,
    jobs,
    keys,
    links,
    orders,
    programs,
    stats,
)
from partnerloop.web.clickwriter import ClickWriter
from partnerloop.web.hosts import (
    HostCache,
    HostRouting,
    not_found,
    portal_path,
    strip_portal_prefix,
)
from partnerloop.web.portal import pages as portal_pages
from partnerloop.web.redirect import PREFIX, LinkCache, Receive, RedirectApp, Scope, Send

log = logging.getLogger("partnerloop.web")

STATIC = Path(__file__).parent / "static"

API_ROUTERS = (
    programs,
    affiliates,
    links,
    conversions,
    orders,
    commissions,
    connectors,
    deliveries,
    stats,
    keys,
    jobs,
)

# Server-rendered pages: staff (/admin) and affiliates (/portal).
PAGE_ROUTERS = (
    admin_auth,
    admin_password,
    admin_dashboard,
    admin_account,
    admin_affiliates,
    admin_commissions,
    admin_connectors,
    admin_deliveries,
    admin_report,
    admin_audit,
    admin_program,
    portal_pages,
)

DESCRIPTION = """
partnerloop's REST API. Authenticate with `Authorization: Bearer <api key>`
(create one with `partnerloop api-key create`). Amounts are decimal strings
with an ISO 4217 currency, e.g. `{"amount": "19.99", "currency": "EUR"}`.
Errors are RFC 9457 problem+json with a stable `code` and the `field` at
fault. Lists use cursor pagination: pass `next_cursor` back as `cursor`.
"""


def _wake(api: FastAPI) -> None:
    # The in-process worker (if any) learns of new inbox work at once.
    worker = api.state.worker
    if worker is not None:
        worker.wake()


_CLICK_PREFIX = PREFIX.encode("ascii")
# The lifespan state entry under which the HTTP front (web/front.py) finds the app.
FRONT_STATE_KEY = "partnerloop.app"


class PartnerloopApp:
    """ASGI entry point. By Host (web/hosts.py): on the installation's own hosts
    the click path /r/{code} goes to the hand-written redirect handler, a webhook
    POST /hooks/{id} to the hand-written webhook handler (web/hooks.py), and
    everything else to FastAPI; a program's portal host shows that program's
    portal at /, its tracking host that program's links at /{code}; any other
    host gets a 404."""

    def __init__(
        self, api: FastAPI, redirect: RedirectApp, webhooks: hooks.HookApp, hosts: HostRouting
    ) -> None:
        self.api = api
        self.redirect = redirect
        self.webhooks = webhooks
        self.hosts = hosts
        # Host values already seen to be the installation's, and whether a Host
        # header sent first settles it (not when X-Forwarded-Host may follow).
        self._known_raw = hosts.known_raw
        self._first_header_decides = not hosts.trusts_forwarded

    def click_now(
        self,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        respond: Callable[[bytes], None],
    ) -> bool:
        """A GET of `url` answered without the ASGI round when it is the common
        click: /r/{code} on a Host already seen to be the installation's, its link
        cached (RedirectApp.click_now). False, with nothing done, for anything else."""
        if not url.startswith(_CLICK_PREFIX):
            return False
        raw_host = self.hosts.raw_host_in(headers)  # X-Forwarded-Host behind a trusted proxy
        if raw_host is None or raw_host not in self._known_raw:
            return False  # no Host, or one not seen yet: the usual way decides
        path, _, query = url.partition(b"?")
        if b"%" in path or b"#" in query:  # escapes and fragments: the usual way decodes them
            return False
        return self.redirect.click_now(
            path[len(_CLICK_PREFIX) :].decode("latin-1"), query, headers, client, respond
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        headers = scope["headers"]
        # The hot path (a click on the main host): clients send Host first, so one
        # comparison and a set lookup; no query, no parsing.
        if (
            self._first_header_decides
            and headers
            and headers[0][0] == b"host"
            and headers[0][1] in self._known_raw
        ) or self.hosts.is_installation(raw_host := self.hosts.raw_host(scope)):
            path: str = scope["path"]
            if path.startswith(PREFIX):
                await self.redirect(scope, receive, send)
            elif (
                path.startswith(hooks.PREFIX)
                and scope["method"] == "POST"
                and "/" not in path[len(hooks.PREFIX) :]
                and len(path) > len(hooks.PREFIX)
            ):
                await self.webhooks(scope, receive, send)
            else:
                await self.api(scope, receive, send)
            return
        assert raw_host is not None
        target = await self.hosts.target(raw_host)
        path = scope["path"]
        if target is None:
            await not_found(send)
        elif target.purpose == "tracking":
            code = path[1:]
            if not code or "/" in code:
                await not_found(send)
            else:
                await self.redirect.serve(scope, send, code, program_id=target.program_id)
        elif path.startswith("/static/"):
            await self.api(scope, receive, send)
        else:
            # The portal lives at /portal/{id}/ in the app; here it is at /, and
            # portal pages build their links on state["portal_base"].
            scope = dict(scope)
            scope["path"] = portal_path(target.program_id, path)
            scope["raw_path"] = portal_path(target.program_id, "").encode() + (
                scope.get("raw_path") or path.encode()
            )
            state = scope.setdefault("state", {})
            state["portal_base"] = ""
            state["host_program_id"] = target.program_id
            await self.api(scope, receive, strip_portal_prefix(send, target.program_id))


def create_app(
    runtime: Runtime,
    *,
    run_worker: bool | None = None,
    click_socket: Path | None = None,
    settle_heap: bool = False,
) -> PartnerloopApp:
    """The whole app. Clicks and webhooks go to the store at `click_socket` (serve's
    own process) or, without one, to a store in a thread of this process.
    `settle_heap` is for the server process (`serve`): its startup's objects are
    frozen out of the garbage collector's full passes (core/heap.py)."""
    writer = ClickWriter.to_socket(click_socket) if click_socket else ClickWriter.in_thread(runtime)
    in_process = runtime.settings.runs_worker_in_process if run_worker is None else run_worker
    # The in-process worker gives way while webhooks arrive (sync/pacing.py).
    pacer = Pacer(share_of_nice(runtime.settings.worker_nice))
    hook_writer = (
        hooks.HookWriter.to_socket(click_socket, on_traffic=pacer.busy)
        if click_socket
        else hooks.HookWriter.in_thread(runtime, on_traffic=pacer.busy)
    )

    # What the lifespan hands to the server's protocols (the app, once built below).
    front_state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        stop = threading.Event()
        thread = None
        if in_process:
            worker = runtime.make_worker(pacer=pacer)
            app.state.worker = worker
            thread = threading.Thread(
                target=worker.run_forever, args=(stop,), name="worker", daemon=True
            )
            thread.start()
        late_settle = heap.settle_now_and_later() if settle_heap else None
        try:
            yield front_state
        finally:
            if late_settle is not None:
                late_settle.cancel()
            await writer.close()
            await hook_writer.close()
            stop.set()
            pacer.release()
            if thread is not None:
                app.state.worker.wake()
                thread.join(timeout=30)

    api = FastAPI(
        title="partnerloop",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.runtime = runtime
    api.state.worker = None
    api.state.hook_writer = hook_writer
    problems.install(api)
    for module in API_ROUTERS:
        api.include_router(module.router, prefix="/api/v1")
    api.include_router(postback.router)
    api.include_router(hooks.router)
    api.include_router(health.router)
    for module in PAGE_ROUTERS:
        api.include_router(module.router)
    # Versioned file names (htmx-2.0.4.min.js): safe to cache for long.
    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    whole = PartnerloopApp(
        api,
        RedirectApp(runtime, writer, LinkCache(runtime)),
        hooks.HookApp(runtime, hook_writer, wake=lambda: _wake(api)),
        HostRouting(runtime.settings, HostCache(runtime)),
    )
    front_state[FRONT_STATE_KEY] = whole
    return whole
