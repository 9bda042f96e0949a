"""The one place that assembles the web app: every router is listed here.

The outer ASGI callable sends /r/{code} to the hand-written redirect handler
and everything else to FastAPI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from partnerloop import __version__
from partnerloop.runtime import Runtime
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


class PartnerloopApp:
    """ASGI entry point: the click path first, FastAPI for everything else."""

    def __init__(self, api: FastAPI, redirect: RedirectApp) -> None:
        self.api = api
        self.redirect = redirect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.redirect(scope, receive, send)
            return
        await self.api(scope, receive, send)


def create_app(runtime: Runtime, *, run_worker: bool | None = None) -> PartnerloopApp:
    writer = ClickWriter(runtime)
    in_process = runtime.settings.runs_worker_in_process if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        stop = threading.Event()
        thread = None
        if in_process:
            worker = runtime.make_worker()
            app.state.worker = worker
            thread = threading.Thread(
                target=worker.run_forever, args=(stop,), name="worker", daemon=True
            )
            thread.start()
        try:
            yield {}
        finally:
            await writer.close()
            stop.set()
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
    return PartnerloopApp(api, RedirectApp(runtime, writer, LinkCache(runtime)))
