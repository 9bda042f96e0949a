"""Shop connectors through the public API, and the vendors' fixture files."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from partnerloop.integrations import backfill
from partnerloop.integrations.registry import SHOPS
from tests.conftest import SHARED_FIXTURES, Server


def create_connector_api(
    api: httpx.Client,
    program_id: str,
    kind: str,
    *,
    secret: str,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "program_id": program_id,
        "kind": kind,
        "settings": settings or {},
        "secret": secret,
    }
    if credentials is not None:
        body["credentials"] = credentials
    response = api.post("/api/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def hook_path(connector: dict[str, Any]) -> str:
    """The path part of the connector's webhook_url (tests post to the test server)."""
    url = str(connector["webhook_url"])
    return url[url.index("/hooks/") :]


def fixture_path(vendor: str, name: str) -> Path:
    return SHARED_FIXTURES / vendor / name


def fixture_bytes(vendor: str, name: str) -> bytes:
    return fixture_path(vendor, name).read_bytes()


def fixture_json(vendor: str, name: str) -> Any:
    """Parsed with exact integers (Python's json keeps ids above 2^53 exact)."""
    return json.loads(fixture_bytes(vendor, name))


def orders_for(api: httpx.Client, program_id: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/orders", params={"program_id": program_id, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def inbound_events(api: httpx.Client, program_id: str, **params: Any) -> list[dict[str, Any]]:
    """The program's inbox (GET /api/v1/inbound-events), filtered by `params`."""
    response = api.get("/api/v1/inbound-events", params={"program_id": program_id, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def run_backfill(
    server: Server, connector_id: str, since: datetime, *, restart: bool = False
) -> backfill.BackfillResult:
    """One `backfill.run` of the connector in the test process, as the CLI runs it."""
    with httpx.Client(timeout=10) as client:
        return backfill.run(
            server.runtime.sessions,
            server.runtime.cipher,
            SHOPS,
            connector_id=connector_id,
            since=since,
            client=client,
            restart=restart,
        )
