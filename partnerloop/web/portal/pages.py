"""The affiliate portal: every route of it, on the one router app.py includes.

Program P's portal lives under /portal/P on the main host, and at / on the
program's own portal domain (the ASGI layer rewrites the path and sets the
base; see context.base_of).
"""

from __future__ import annotations

from fastapi import APIRouter

from partnerloop.web.portal import api, auth, dashboard, links, password, payouts

router = APIRouter(include_in_schema=False)
for _module in (dashboard, auth, password, links, payouts, api):
    router.include_router(_module.router)
