"""Health, readiness, metrics and the API description."""

from __future__ import annotations

import httpx

from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api


def test_health_and_readiness(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready"}


def test_openapi_describes_the_public_contract(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        spec = anonymous.get("/api/v1/openapi.json").json()
        docs = anonymous.get("/docs")

    paths = spec["paths"]
    for path, method in [
        ("/api/v1/programs", "post"),
        ("/api/v1/affiliates", "post"),
        ("/api/v1/affiliates/{affiliate_id}/approve", "post"),
        ("/api/v1/links", "post"),
        ("/api/v1/conversions", "post"),
        ("/api/v1/refunds", "post"),
        ("/api/v1/commissions", "get"),
        ("/api/v1/stats", "get"),
        ("/api/v1/inbound-events", "get"),
        ("/api/v1/outbox", "get"),
        ("/postback", "get"),
        ("/postback", "post"),
    ]:
        assert method in paths[path], (path, method)
    conversion = paths["/api/v1/conversions"]["post"]["responses"]
    assert {"200", "201", "401", "403", "422"} <= set(conversion)
    assert docs.status_code == 200
    assert "/api/v1/openapi.json" in docs.text


def test_metrics_count_redirects_and_clicks(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])

        def recorded() -> float:
            for line in api.get("/metrics").text.splitlines():
                if line.startswith('partnerloop_redirects_total{outcome="recorded"}'):
                    return float(line.split()[-1])
            return 0.0

        before = recorded()
        click(api, link["code"])
        click(api, link["code"])

        assert recorded() - before == 2.0
