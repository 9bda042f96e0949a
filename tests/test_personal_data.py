"""No affiliate or customer e-mail, name or IP is stored in plaintext: search the
SQLite file byte for byte, and every row of every PostgreSQL table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import subprocess
from pathlib import Path

from sqlalchemy import inspect, text

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.tracking.service import ClickRecord, new_click_id, write_clicks
from tests.conftest import Backend, Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.connectors import create_connector_api, fixture_json, hook_path, orders_for
from tests.factories.programs import create_program_api
from tests.factories.tracking import BROWSER_UA, click, create_link_api


def _haystack(server: Server, backend: Backend) -> bytes:
    if backend.name == "sqlite":
        # The raw bytes of the database file and its write-ahead log (recent
        # commits may live only there).
        # Read by another process: opening and closing the file here would drop
        # this process's POSIX locks on it (SQLite's connections in this process
        # would go on as if they held them) and let other processes corrupt it.
        base = Path(backend.database_url.removeprefix("sqlite:///"))
        files = [str(p) for p in (base, Path(f"{base}-wal")) if p.exists()]
        return subprocess.run(["cat", *files], capture_output=True, check=True).stdout
    chunks = []
    with server.runtime.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            query = text(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608 (table names from the catalog)
            for (row,) in connection.execute(query):
                chunks.append(row.encode())
    return "\n".join(c.decode() for c in chunks).encode()


def _click_from(ip: str, link: dict[str, str]) -> ClickRecord:
    return ClickRecord(
        id=new_click_id(),
        program_id=link["program_id"],
        link_id=link["id"],
        affiliate_id=link["affiliate_id"],
        created_at=utcnow(),
        ip=ip,
        user_agent=BROWSER_UA,
        referrer=None,
        landing_url=link["destination_url"],
        subs=(None, None, None, None, None),
        is_unique=True,
    )


def test_no_personal_data_in_plaintext(server: Server, backend: Backend) -> None:
    marker = secrets.token_hex(5)
    affiliate_email = f"affiliate.{marker}@partners.example"
    affiliate_name = f"Margaretha {marker} Zelle"
    customer_email = f"customer.{marker}@shoppers.example"
    shopper_ip = "203.0.113.77"
    with server.client() as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(
            api, program["id"], email=affiliate_email, name=affiliate_name
        )
        link = create_link_api(api, program["id"], affiliate["id"])
        click_id = click(api, link["code"])
        api.post(
            "/api/v1/conversions",
            json={
                "program_id": program["id"],
                "order_id": f"pii-{marker}",
                "amount": "10.00",
                "currency": "EUR",
                "click_id": click_id,
                "customer_email": customer_email,
            },
        ).raise_for_status()
        api.get(
            "/postback",
            params={
                "token": program["postback_token"],
                "order_id": f"pii-pb-{marker}",
                "amount": "5.00",
                "customer_email": customer_email.upper(),
            },
        ).raise_for_status()
        # A shop webhook carrying the customer's e-mail, name and phone, a Shopify
        # privacy request, and the connector's own signing secret and API token.
        shop_secret = f"shpss_{marker}"
        connector = create_connector_api(
            api,
            program["id"],
            "shopify",
            secret=shop_secret,
            settings={"shop_domain": "pii.myshopify.com"},
            credentials={"access_token": f"shpat_{marker}"},
        )
        order = fixture_json("shopify", "docs-example_2026-04_orders_paid.json")["response"]
        order = dict(
            order,
            id=int(marker, 16),
            currency="EUR",
            email=customer_email,
            customer=dict(
                order["customer"],
                email=customer_email,
                first_name="Henrietta",
                last_name=f"{marker}x",
            ),
        )
        redact = dict(
            fixture_json("shopify", "docs-example_2026-04_customers_redact.json")["response"],
            customer={"id": 191167, "email": customer_email, "phone": "555-625-1199"},
        )
        for topic, payload in (("orders/paid", order), ("customers/redact", redact)):
            body = json.dumps(payload).encode()
            signature = base64.b64encode(
                hmac.new(shop_secret.encode(), body, hashlib.sha256).digest()
            ).decode()
            api.post(
                hook_path(connector),
                content=body,
                headers={"X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": signature},
            ).raise_for_status()
        drain(server.runtime)
        # The test server sees every shopper as 127.0.0.1, which other tables hold
        # in URLs; store a click with a distinctive IP through the same writer.
        with transaction(server.runtime.sessions) as db:
            write_clicks(db, server.runtime.cipher, [_click_from(shopper_ip, link)])
        # The API still shows the decrypted values to an authorised caller.
        shown = api.get(f"/api/v1/affiliates/{affiliate['id']}").json()
        assert (shown["email"], shown["name"]) == (affiliate_email, affiliate_name)
        [shop_order] = orders_for(api, program["id"], external_id=str(int(marker, 16)))
        assert (shop_order["customer"]["email"], shop_order["customer"]["name"]) == (
            customer_email,
            f"Henrietta {marker}x",
        )

    haystack = _haystack(server, backend).lower()

    for secret in (
        affiliate_email,
        affiliate_name,
        customer_email,
        f"{marker} zelle",
        f"henrietta {marker}x",
        "555-625-1199",
        f"shpss_{marker}",
        f"shpat_{marker}",
    ):
        assert secret.lower().encode() not in haystack, secret
    assert shopper_ip.encode() not in haystack
