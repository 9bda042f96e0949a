"""Everything a scenario needs, made through partnerloop's public REST API (v1,
admin key), so it works against any running instance: a program of its own,
approved affiliates with a link and a coupon each, a Shopify connector the
fake shop signs for, a HubSpot connector pointed at the fake CRM, and a read
key bound to the program (its queue counts are this program's alone).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from partnerloop.simulator.plan import coupon_code

SHOP_HOST = "sim-shop.example"
COMMISSION_RATE = Decimal("12.5")  # a rate whose half-cents exercise the rounding rule


class ApiError(Exception):
    pass


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, f"/api/v1{path}", **kwargs)
    if response.status_code >= 300:
        raise ApiError(
            f"{method} /api/v1{path} answered {response.status_code}: {response.text[:300]}"
        )
    return response.json()


def every(client: httpx.Client, path: str, **params: str) -> Iterator[dict[str, Any]]:
    """Every item of a paged list."""
    query: dict[str, str | int] = {**params, "limit": 200}
    while True:
        page = call(client, "GET", path, params=query)
        yield from page["items"]
        if not page.get("next_cursor"):
            return
        query["cursor"] = page["next_cursor"]


@dataclass(frozen=True)
class Setup:
    program_id: str
    rate: Decimal
    currency: str
    affiliate_ids: list[str]
    affiliate_names: list[str]
    link_codes: list[str]
    shop_connector_id: str
    shop_secret: str
    shop_domain: str
    crm_connector_id: str
    program_key: str  # read scope, bound to the program


def create(
    client: httpx.Client,
    *,
    scenario: str,
    affiliates: int,
    crm_url: str,
    crm_token: str,
    currency: str = "EUR",
) -> Setup:
    tag = secrets.token_hex(3)
    program = call(
        client,
        "POST",
        "/programs",
        json={
            "name": f"simulate {scenario} {tag}",
            "currency": currency,
            "cookie_days": 30,
            "allowed_domains": [SHOP_HOST],
            "commission": {"type": "percentage", "value": str(COMMISSION_RATE)},
            # Held, so no approval run changes a commission while it is reconciled.
            "hold_days": 30,
        },
    )
    program_id = program["id"]
    ids, names, codes = [], [], []
    for index in range(affiliates):
        name = f"Sim Partner {index + 1}"
        affiliate = call(
            client,
            "POST",
            "/affiliates",
            json={
                "program_id": program_id,
                # One per program: affiliates are global by e-mail.
                "email": f"partner{index + 1}+{program_id.lower()}@partners.sim.example",
                "name": name,
            },
        )
        call(client, "POST", f"/affiliates/{affiliate['id']}/approve")
        link = call(
            client,
            "POST",
            "/links",
            json={
                "program_id": program_id,
                "affiliate_id": affiliate["id"],
                "destination_url": f"https://{SHOP_HOST}/products/{index + 1}",
            },
        )
        call(
            client,
            "POST",
            "/coupons",
            json={
                "program_id": program_id,
                "affiliate_id": affiliate["id"],
                "code": coupon_code(scenario, index),
            },
        )
        ids.append(affiliate["id"])
        names.append(name)
        codes.append(link["code"])
    shop_secret = f"shpss_{secrets.token_hex(16)}"
    shop_domain = f"sim-{tag}.myshopify.com"
    shop = call(
        client,
        "POST",
        "/connectors",
        json={
            "program_id": program_id,
            "kind": "shopify",
            "settings": {"shop_domain": shop_domain},
            "secret": shop_secret,
        },
    )
    crm = call(
        client,
        "POST",
        "/connectors",
        json={
            "program_id": program_id,
            "kind": "hubspot",
            "settings": {"api_base_url": crm_url},
            "credentials": {"access_token": crm_token},
        },
    )
    key = call(
        client,
        "POST",
        "/api-keys",
        json={"name": f"simulate {scenario}", "scope": "read", "program_id": program_id},
    )
    return Setup(
        program_id=program_id,
        rate=COMMISSION_RATE,
        currency=currency,
        affiliate_ids=ids,
        affiliate_names=names,
        link_codes=codes,
        shop_connector_id=shop["id"],
        shop_secret=shop_secret,
        shop_domain=shop_domain,
        crm_connector_id=crm["id"],
        program_key=key["key"],
    )
