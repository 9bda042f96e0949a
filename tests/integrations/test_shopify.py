"""Shopify webhooks end to end: signed deliveries of Shopify's own example
payloads through the real endpoint, the inbox and the worker, exactly once."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations.models import Connector
from partnerloop.integrations.shop import ConnectorConfig, WebhookRequest
from partnerloop.integrations.shopify.connector import CONNECTOR
from partnerloop.privacy.models import PrivacyRequest
from tests.conftest import Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.connectors import (
    create_connector_api,
    fixture_bytes,
    fixture_json,
    hook_path,
    inbound_events,
    orders_for,
    run_backfill,
)
from tests.factories.programs import create_program_api
from tests.factories.shopify import (
    SECRET,
    SHOP,
    deliver,
    docs_body,
    docs_order,
    paid_order,
    setup,
    sign,
)
from tests.factories.tracking import click, create_link_api
from tests.support.http import Reply, ScriptedServer

ORDER_ID = "820982911946154500"  # as in the files: JS-rounded, still exact here


def _body(order: dict[str, Any]) -> bytes:
    return json.dumps(order).encode()


# --- the signature ------------------------------------------------------------------------


def _config() -> ConnectorConfig:
    return ConnectorConfig(
        connector_id="con_x", program_currency="USD", settings={"shop_domain": SHOP}
    )


def test_the_notes_signature_vector_verifies() -> None:
    body = b'{"shop_id":954889,"shop_domain":"{shop}.myshopify.com"}'
    request = WebhookRequest(
        method="POST",
        headers={
            "x-shopify-hmac-sha256": "A504NLm6BXxljXFiNrVoExj8Fkw0GwdDJJO7y8di138=",
            "x-shopify-topic": "shop/redact",
            "x-shopify-event-id": "ev-1",
        },
        query={},
        body=body,
    )

    delivery = CONNECTOR.verify(
        request, secrets=["shpss_test_secret"], config=_config(), now=utcnow()
    )

    assert (delivery.topic, delivery.event_id) == ("shop/redact", "ev-1")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-shopify-hmac-sha256": "A504NLm6BXxljXFiNrVoExj8Fkw0GwdDJJO7y8di139="},
        {"x-shopify-hmac-sha256": ""},
    ],
    ids=["missing", "one-bit-off", "empty"],
)
def test_a_wrong_or_missing_signature_is_refused(headers: dict[str, str]) -> None:
    from partnerloop.integrations.shop import BadSignature

    request = WebhookRequest(
        method="POST",
        headers=headers,
        query={},
        body=b'{"shop_id":954889,"shop_domain":"{shop}.myshopify.com"}',
    )
    with pytest.raises(BadSignature):
        CONNECTOR.verify(request, secrets=["shpss_test_secret"], config=_config(), now=utcnow())


def test_bad_signatures_get_401_and_store_nothing(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        body = docs_body("orders/create")

        wrong_key = deliver(api, connector, "orders/create", body, event_id="e1", secret="other")
        missing = api.post(
            hook_path(connector),
            content=body,
            headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Event-Id": "e2"},
        )
        tampered = api.post(
            hook_path(connector),
            content=body + b" ",
            headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": sign(body)},
        )
        other_shop = api.post(
            hook_path(connector),
            content=body,
            headers={
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Hmac-Sha256": sign(body),
                "X-Shopify-Shop-Domain": "someone-else.myshopify.com",
            },
        )
        unknown = api.post("/hooks/con_01AAAAAAAAAAAAAAAAAAAAAAAA", content=body)

        assert [r.status_code for r in (wrong_key, missing, tampered, other_shop)] == [401] * 4
        assert wrong_key.json()["code"] == "invalid_signature"
        assert unknown.status_code == 404
        assert inbound_events(api, program["id"]) == []


def test_both_secrets_are_accepted_during_a_rotation(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        rotated = api.post(
            f"/api/v1/connectors/{connector['id']}/secret", json={"secret": "shpss_new"}
        )
        assert rotated.status_code == 200
        assert rotated.json()["rotating_secret"] is True
        body = docs_body("customers/create")

        old = deliver(api, connector, "customers/create", body, event_id="r1", secret=SECRET)
        new = deliver(api, connector, "customers/create", body, event_id="r2", secret="shpss_new")
        neither = deliver(api, connector, "customers/create", body, event_id="r3", secret="nope")

        assert (old.status_code, new.status_code, neither.status_code) == (200, 200, 401)
        assert len(inbound_events(api, program["id"])) == 2


# --- every payload Shopify publishes, normalised exactly ----------------------------------


@pytest.mark.parametrize(
    "topic",
    ["orders/create", "orders/paid", "orders/updated", "orders/cancelled", "orders/fulfilled"],
)
def test_shopify_example_orders_are_normalised_exactly(server: Server, topic: str) -> None:
    with server.client() as api:
        program, connector = setup(api)

        answer = deliver(api, connector, topic, docs_body(topic), event_id=f"ev-{topic}")
        drain(server.runtime)

        assert (answer.status_code, answer.json()["status"]) == (200, "accepted")
        [order] = orders_for(api, program["id"], external_id=ORDER_ID)
        # The example order is voided and cancelled in every docs file.
        assert {k: order[k] for k in ("external_id", "number", "source", "status", "currency")} == {
            "external_id": ORDER_ID,
            "number": "#9999",
            "source": "shopify",
            "status": "cancelled",
            "currency": "USD",
        }
        assert (
            order["amount"],
            order["total"],
            order["tax"],
            order["shipping"],
            order["discount"],
        ) == (
            "404.95",
            "404.95",
            "0.00",
            "10.00",
            "20.00",
        )
        assert [(i["sku"], i["quantity"], i["unit_price"], i["total"]) for i in order["items"]] == [
            ("SKU2006-001", 1, "89.99", "89.99"),
            ("LENS-PROTECT-2YR", 1, "19.99", "19.99"),
            ("CASE-LEATHER-PREM", 1, "24.99", "24.99"),
            ("SKU2006-020", 1, "159.99", "159.99"),
            ("SKU2006-035", 1, "119.99", "119.99"),
        ]
        assert order["items"][0]["id"] == "487817672276298560"
        assert order["customer"] == {
            "id": order["customer"]["id"],
            "external_id": "115310627314723950",
            "email": "john@example.com",
            "name": "John Smith",
            "affiliate_id": None,
        }
        assert order["ordered_at"] == "2022-01-01T00:00:00Z"  # 2021-12-31T19:00:00-05:00


def test_shopify_example_refund_is_applied_when_its_order_arrives(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        refund_body = docs_body("refunds/create")
        order = docs_order()
        order.update(financial_status="paid", cancelled_at=None)

        deliver(api, connector, "refunds/create", refund_body, event_id="ref-1")
        drain(server.runtime)
        assert orders_for(api, program["id"]) == []
        deliver(api, connector, "orders/paid", _body(order), event_id="ord-1")
        drain(server.runtime)

        [stored] = orders_for(api, program["id"], external_id=ORDER_ID)
        # The refund's five line subtotals (414.95, not its 75.00 transaction, which
        # may include tax and shipping) exceed the commission base: capped at 404.95.
        assert (stored["status"], stored["amount"], stored["refunded_amount"]) == (
            "paid",
            "404.95",
            "404.95",
        )


def test_the_rest_refund_fixture_counts_its_refunded_lines(server: Server) -> None:
    refund = fixture_json("shopify", "rest-fixture_refund.json")["refund"]
    with server.client() as api:
        program, connector = setup(api)
        deliver(api, connector, "refunds/create", json.dumps(refund).encode(), event_id="rest")
        drain(server.runtime)
        [event] = inbound_events(api, program["id"])
        assert event["state"] == "processed", event["last_error"]
    with server.runtime.sessions() as db:
        rows = db.execute(
            text(
                "SELECT refund_id, order_id, amount_minor, currency FROM refunds WHERE program_id = :p"
            ),
            {"p": program["id"]},
        ).all()
    # Two refunded lines of 199.00 (the old shape has no line subtotal; the
    # 209.00 transaction includes tax and shipping).
    assert [tuple(row) for row in rows] == [("509562969", "450789469", 39800, "USD")]


def test_anonymised_real_payloads_without_amounts_are_quarantined(server: Server) -> None:
    # Gadget's real captures have every string replaced by 'example string',
    # amounts included: kept with the reason, never half-applied.
    with server.client() as api:
        program, connector = setup(api)
        deliver(
            api,
            connector,
            "refunds/create",
            fixture_bytes("shopify", "real-anonymized_2025-04_refunds_1.json"),
            event_id="anon-refund",
        )
        deliver(
            api,
            connector,
            "order_transactions/create",
            fixture_bytes("shopify", "real-anonymized_2025-04_order_transactions_1.json"),
            event_id="anon-transaction",
        )
        transaction = fixture_json("shopify", "rest-fixture_transaction.json")["transaction"]
        deliver(
            api,
            connector,
            "order_transactions/create",
            json.dumps(transaction).encode(),
            event_id="rest-transaction",
        )
        drain(server.runtime)

        by_id = {e["external_id"]: e for e in inbound_events(api, program["id"])}
        assert by_id["anon-refund"]["state"] == "rejected"
        assert "'example string'" in by_id["anon-refund"]["last_error"]
        # Payments are read from the order's financial_status: accepted, nothing changes.
        assert (by_id["anon-transaction"]["state"], by_id["rest-transaction"]["state"]) == (
            "processed",
            "processed",
        )
        assert orders_for(api, program["id"]) == []


def test_customers_are_created_and_updated_by_their_topics(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        deliver(api, connector, "customers/create", docs_body("customers/create"), event_id="c1")
        deliver(api, connector, "customers/update", docs_body("customers/update"), event_id="c2")
        rest = fixture_json("shopify", "rest-fixture_customer.json")["customer"]
        deliver(api, connector, "customers/update", json.dumps(rest).encode(), event_id="c3")
        anonymised = fixture_bytes("shopify", "real-anonymized_2025-04_customers_1.json")
        deliver(api, connector, "customers/update", anonymised, event_id="c4")
        drain(server.runtime)

        assert [e["state"] for e in inbound_events(api, program["id"])] == ["processed"] * 4
    with server.runtime.sessions() as db:
        rows = db.execute(
            text(
                "SELECT external_id, email_enc FROM customers WHERE program_id = :p ORDER BY external_id"
            ),
            {"p": program["id"]},
        ).all()
    assert [row.external_id for row in rows] == sorted(
        ["706405506930370000", str(rest["id"]), "123"]
    )
    assert all("@" not in (row.email_enc or "") for row in rows)  # encrypted at rest


@pytest.mark.parametrize(
    ("topic", "kind", "external_id"),
    [
        ("customers/data_request", "data_request", "data_request:9999"),
        ("customers/redact", "customer_redact", "customer_redact:191167:299938,280263,220458"),
        ("shop/redact", "shop_redact", "shop_redact:954889"),
    ],
)
def test_privacy_topics_are_recorded_once_and_acknowledged(
    server: Server, topic: str, kind: str, external_id: str
) -> None:
    with server.client() as api:
        program, connector = setup(api)
        body = docs_body(topic)
        answers = [deliver(api, connector, topic, body, event_id=f"p-{n}") for n in range(2)]
        drain(server.runtime)

        assert [a.status_code for a in answers] == [200, 200]
    with server.runtime.sessions() as db:
        [request] = db.scalars(
            select(PrivacyRequest).where(PrivacyRequest.program_id == program["id"])
        ).all()
        assert (request.kind, request.external_id, request.state) == (kind, external_id, "open")
        assert "john@example.com" not in request.details_enc
        decrypted = json.loads(
            server.runtime.cipher.decrypt(request.details_enc, field="privacy.details")
        )
        assert decrypted["shop_id"] == 954889


def test_app_uninstalled_is_accepted_and_changes_nothing(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        deliver(api, connector, "app/uninstalled", docs_body("app/uninstalled"), event_id="u1")
        drain(server.runtime)
        [event] = inbound_events(api, program["id"])
        assert event["state"] == "processed"
        assert orders_for(api, program["id"]) == []


def test_a_connector_deleted_between_two_passes_of_one_worker_rejects_the_second_s_events(
    server: Server,
) -> None:
    # The worker reads a shop connector once per pass over its events; the next
    # pass must see what changed in between.
    with server.client() as api:
        program, connector = setup(api)
        running = server.runtime.make_worker()
        deliver(api, connector, "orders/paid", _body(paid_order(7001)), event_id="pass-1")
        running.drain()
        deliver(api, connector, "orders/paid", _body(paid_order(7002)), event_id="pass-2")
        with transaction(server.runtime.sessions) as db:
            db.execute(delete(Connector).where(Connector.id == connector["id"]))
        running.drain()

        events = {e["external_id"]: e for e in inbound_events(api, program["id"])}
        recorded = [o["external_id"] for o in orders_for(api, program["id"])]

    assert (events["pass-1"]["state"], events["pass-2"]["state"]) == ("processed", "rejected")
    assert events["pass-2"]["last_error"] == f"connector {connector['id']} no longer exists"
    assert recorded == ["7001"]


# --- attribution --------------------------------------------------------------------------


def _affiliate_click(api: httpx.Client, program_id: str) -> tuple[dict[str, Any], str]:
    affiliate = create_affiliate_api(api, program_id)
    link = create_link_api(api, program_id, affiliate["id"])
    return affiliate, click(api, link["code"])


def _visit_from_a_click(
    api: httpx.Client, program_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An affiliate and the order fields of a visit from their click, placed now."""
    affiliate, click_id = _affiliate_click(api, program_id)
    now = utcnow().isoformat()
    return affiliate, {
        "landing_site": f"/?plclid={click_id}",
        "created_at": now,
        "processed_at": now,
    }


@pytest.mark.parametrize("where", ["landing_site", "note_attributes", "discount_code"])
def test_orders_are_attributed_from_landing_site_attributes_or_coupon(
    server: Server, where: str
) -> None:
    with server.client() as api:
        program, connector = setup(api)
        affiliate, click_id = _affiliate_click(api, program["id"])
        changes: dict[str, Any] = {
            "created_at": utcnow().isoformat(),
            "processed_at": utcnow().isoformat(),
        }
        if where == "landing_site":
            changes["landing_site"] = f"/products/sunglasses?utm_source=x&plclid={click_id}"
        elif where == "note_attributes":
            changes["note_attributes"] = [{"name": "plclid", "value": click_id}]
        else:
            coupon = api.post(
                "/api/v1/coupons",
                json={
                    "program_id": program["id"],
                    "affiliate_id": affiliate["id"],
                    "code": "SUMMER10",
                },
            )
            assert coupon.status_code == 201, coupon.text
            changes["discount_codes"] = [
                {"code": "WELCOME", "amount": "1.00", "type": "fixed_amount"},
                {"code": "SUMMER10", "amount": "10.00", "type": "fixed_amount"},
            ]
        deliver(api, connector, "orders/paid", _body(paid_order(5001, **changes)), event_id="a1")
        drain(server.runtime)

        [order] = orders_for(api, program["id"], external_id="5001")
        assert (order["affiliate_id"], order["attribution"]) == (
            affiliate["id"],
            "coupon" if where == "discount_code" else "click",
        )
        conversion = api.get(f"/api/v1/conversions/{order['id']}").json()
        # 10 % of the commission base 404.95 = 40.495, half-even to the even cent: 40.50.
        assert [c["amount"] for c in conversion["commissions"]] == ["40.50"]


# --- exactly once, whatever the order of arrival ------------------------------------------


def test_the_same_event_three_times_is_one_order_and_one_commission(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        _, click_id = _affiliate_click(api, program["id"])
        body = _body(
            paid_order(6001, landing_site=f"/?plclid={click_id}", created_at=utcnow().isoformat())
        )

        answers = [deliver(api, connector, "orders/paid", body, event_id="same") for _ in range(3)]
        drain(server.runtime)

        assert [a.json()["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
        assert len({a.json()["event_id"] for a in answers}) == 1
        [order] = orders_for(api, program["id"])
        conversion = api.get(f"/api/v1/conversions/{order['id']}").json()
        assert len(conversion["commissions"]) == 1


def test_two_subscriptions_deliver_one_event_once_by_event_id(server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)
        body = _body(paid_order(6101))
        first = deliver(api, connector, "orders/paid", body, event_id="ev-shared")
        # Same event, another subscription: another webhook id, the same event id.
        second = api.post(
            hook_path(connector),
            content=body,
            headers={
                "shopify-topic": "orders/paid",
                "shopify-hmac-sha256": sign(body),
                "shopify-event-id": "ev-shared",
                "shopify-webhook-id": "another-subscription",
            },
        )
        assert (first.json()["status"], second.json()["status"]) == ("accepted", "duplicate")


def test_updated_before_created_ends_paid_with_its_commission(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        _, visit = _visit_from_a_click(api, program["id"])
        pending = paid_order(
            6201, financial_status="pending", updated_at="2026-11-20T10:00:00-05:00", **visit
        )
        paid = paid_order(6201, updated_at="2026-11-20T10:05:00-05:00", **visit)

        deliver(api, connector, "orders/updated", _body(paid), event_id="late-update")
        drain(server.runtime)
        deliver(api, connector, "orders/create", _body(pending), event_id="early-create")
        drain(server.runtime)

        [order] = orders_for(api, program["id"])
        assert (order["status"], order["updated_at"]) == ("paid", "2026-11-20T15:05:00Z")
        conversion = api.get(f"/api/v1/conversions/{order['id']}").json()
        assert [(c["amount"], c["state"]) for c in conversion["commissions"]] == [
            ("40.50", "pending")
        ]


def test_pending_then_paid_creates_the_commission_once_paid(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        _, visit = _visit_from_a_click(api, program["id"])
        placed = paid_order(
            6301, financial_status="pending", updated_at="2026-11-20T10:00:00Z", **visit
        )
        settled = paid_order(6301, updated_at="2026-11-20T10:01:00Z", **visit)

        deliver(api, connector, "orders/create", _body(placed), event_id="c")
        drain(server.runtime)
        [pending] = orders_for(api, program["id"])
        no_commission = api.get(f"/api/v1/conversions/{pending['id']}").json()["commissions"]
        deliver(api, connector, "orders/paid", _body(settled), event_id="p")
        drain(server.runtime)

        [paid] = orders_for(api, program["id"])
        assert (pending["status"], no_commission, paid["status"]) == ("pending", [], "paid")
        assert len(api.get(f"/api/v1/conversions/{paid['id']}").json()["commissions"]) == 1


def test_an_older_update_after_a_newer_one_changes_nothing(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        newer = paid_order(
            6401, updated_at="2026-11-20T12:00:00Z", cancelled_at="2026-11-20T12:00:00Z"
        )
        older = paid_order(6401, updated_at="2026-11-20T11:00:00Z")

        deliver(api, connector, "orders/cancelled", _body(newer), event_id="new")
        drain(server.runtime)
        deliver(api, connector, "orders/updated", _body(older), event_id="old")
        drain(server.runtime)

        [order] = orders_for(api, program["id"])
        assert (order["status"], order["updated_at"]) == ("cancelled", "2026-11-20T12:00:00Z")
        assert [e["state"] for e in inbound_events(api, program["id"])] == [
            "processed",
            "processed",
        ]


def test_cancellation_reverses_the_commission_and_revenue(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        affiliate, visit = _visit_from_a_click(api, program["id"])
        paid = paid_order(6501, updated_at="2026-11-20T10:00:00Z", **visit)
        cancelled = paid_order(
            6501, updated_at="2026-11-20T11:00:00Z", cancelled_at="2026-11-20T11:00:00Z", **visit
        )

        deliver(api, connector, "orders/paid", _body(paid), event_id="p")
        deliver(api, connector, "orders/cancelled", _body(cancelled), event_id="x")
        drain(server.runtime)

        [order] = orders_for(api, program["id"])
        commissions = api.get(f"/api/v1/conversions/{order['id']}").json()["commissions"]
        assert order["status"] == "cancelled"
        assert [(c["amount"], c["state"]) for c in commissions] == [("0.00", "reversed")]
        stats = api.get(
            "/api/v1/stats", params={"program_id": program["id"], "affiliate_id": affiliate["id"]}
        ).json()
        assert (stats["revenue"], stats["conversions"]) == ("0.00", 1)
        assert stats["commissions"]["reversed"] == "40.50"
        assert stats["commissions"]["pending"] == "0.00"


def test_a_deleted_order_is_cancelled_and_a_paid_commission_clawed_back(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        _, visit = _visit_from_a_click(api, program["id"])
        deliver(api, connector, "orders/paid", _body(paid_order(6551, **visit)), event_id="p")
        drain(server.runtime)
        [order] = orders_for(api, program["id"])
        [commission] = api.get(f"/api/v1/conversions/{order['id']}").json()["commissions"]
        for step in ("approve", "mark-paid"):
            answer = api.post(f"/api/v1/commissions/{commission['id']}/{step}")
            assert answer.status_code == 200, answer.text

        # orders/delete carries only the id.
        deliver(api, connector, "orders/delete", b'{"id":6551}', event_id="d")
        drain(server.runtime)

        [deleted] = orders_for(api, program["id"])
        [paid] = api.get(f"/api/v1/conversions/{order['id']}").json()["commissions"]
        assert deleted["status"] == "cancelled"
        # Already paid out: the commission stays paid and its amount is owed back.
        assert (paid["state"], paid["amount"], paid["clawback_amount"]) == (
            "paid",
            "40.50",
            "40.50",
        )


def test_refunds_inside_order_updates_count_once_each(server: Server) -> None:
    with server.client() as api:
        program, connector = setup(api)
        _, visit = _visit_from_a_click(api, program["id"])
        refund = copy.deepcopy(
            fixture_json("shopify", "docs-example_2026-04_refunds_create.json")["response"]
        )
        refund["order_id"] = 6601
        refund["refund_line_items"] = refund["refund_line_items"][:1]  # the 89.99 sunglasses
        paid = paid_order(6601, updated_at="2026-11-20T10:00:00Z", **visit)
        updated = paid_order(
            6601,
            updated_at="2026-11-20T10:10:00Z",
            financial_status="partially_refunded",
            refunds=[refund],
            **visit,
        )

        deliver(api, connector, "orders/paid", _body(paid), event_id="p")
        deliver(api, connector, "refunds/create", _body(refund), event_id="r")
        deliver(api, connector, "orders/updated", _body(updated), event_id="u")
        drain(server.runtime)

        [order] = orders_for(api, program["id"])
        commissions = api.get(f"/api/v1/conversions/{order['id']}").json()["commissions"]
        assert order["refunded_amount"] == "89.99"
        # 10 % of 404.95 - 89.99 = 314.96 -> 31.496 -> 31.50 (half-even)
        assert [c["amount"] for c in commissions] == ["31.50"]


def test_ids_above_2_to_the_53_stay_exact(server: Server) -> None:
    big = 2**53 + 1  # 9007199254740993: a float would make it ...992
    with server.client() as api:
        program, connector = setup(api)
        order = paid_order(big)
        order["customer"] = dict(order["customer"], id=2**63 - 1)
        deliver(api, connector, "orders/paid", _body(order), event_id="big")
        drain(server.runtime)

        [stored] = orders_for(api, program["id"], external_id=str(big))
        assert stored["external_id"] == "9007199254740993"
        assert stored["customer"]["external_id"] == "9223372036854775807"


# --- quarantine ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("orders/create", b'{"id": 1, "currency": ', "malformed JSON"),
        (
            "orders/create",
            _body({k: v for k, v in paid_order(7001).items() if k != "subtotal_price"}),
            "subtotal_price is missing",
        ),
        ("orders/create", _body(paid_order(7002, currency="XYZ")), "unknown currency 'XYZ'"),
        ("orders/create", _body(paid_order(7003, currency="EUR")), "currency_mismatch"),
        ("products/update", b"{}", "unknown topic 'products/update'"),
    ],
    ids=["malformed", "no-total", "unknown-currency", "other-currency", "unknown-topic"],
)
def test_unusable_payloads_are_quarantined_with_the_reason_and_replayable(
    server: Server, topic: str, body: bytes, reason: str
) -> None:
    with server.client() as api:
        program, connector = setup(api)

        answer = deliver(api, connector, topic, body, event_id="bad")
        drain(server.runtime)

        assert answer.status_code == 200  # stored: the shop must not retry our problem
        [event] = inbound_events(api, program["id"], state="rejected")
        assert reason in event["last_error"]
        assert orders_for(api, program["id"]) == []
        replayed = api.post(f"/api/v1/inbound-events/{event['id']}/replay")
        assert (replayed.status_code, replayed.json()["state"]) == (200, "pending")
        drain(server.runtime)
        [again] = inbound_events(api, program["id"])
        assert (again["state"], again["attempts"]) == ("rejected", 1)  # replay: fresh attempts
        assert again["handled_at"] > event["handled_at"]


# --- backfill -------------------------------------------------------------------------------


def _page(ids: list[int], next_url: str | None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    body = {"orders": [paid_order(i, updated_at=f"2026-11-2{i % 10}T10:00:00Z") for i in ids]}
    return Reply(200, headers, json.dumps(body).encode())


def test_backfill_pages_through_orders_resumes_after_a_failure_and_counts_each_once(
    server: Server,
) -> None:
    with server.client() as api:
        program = create_program_api(api, currency="USD")
        shop = ScriptedServer([])
        with shop.running():
            page2 = f"{shop.url}/admin/api/2026-04/orders.json?limit=250&page_info=p2"
            page3 = f"{shop.url}/admin/api/2026-04/orders.json?limit=250&page_info=p3"
            connector = create_connector_api(
                api,
                program["id"],
                "shopify",
                secret=SECRET,
                settings={"shop_domain": SHOP, "api_base_url": shop.url},
                credentials={"access_token": "shpat_test"},
            )
            # One order also arrives by webhook: seen both ways, counted once.
            deliver(
                api,
                connector,
                "orders/paid",
                _body(paid_order(8002, updated_at="2026-11-22T10:00:00Z")),
                event_id="hook",
            )
            shop.replies = [
                _page([8001, 8002], page2),
                Reply(503, {"Retry-After": "0"}, b""),
                Reply(404, {}, b"gone"),
            ]
            since = datetime(2026, 11, 1, tzinfo=UTC)

            with pytest.raises(httpx.HTTPStatusError):
                run_backfill(server, connector["id"], since)
            saved = api.get(f"/api/v1/connectors/{connector['id']}").json()["cursor"]
            shop.replies = [_page([8003, 8004], page3), _page([8005], None)]
            result = run_backfill(server, connector["id"], since)
            drain(server.runtime)

        paths = [r.path for r in shop.received]
        assert paths[0].startswith(
            "/admin/api/2026-04/orders.json?status=any&limit=250&updated_at_min=2026-11-01T00%3A00%3A00%2B00%3A00"
        ) or paths[0].startswith(
            "/admin/api/2026-04/orders.json?status=any&limit=250&updated_at_min=2026-11-01T00:00:00+00:00"
        )
        assert all(r.headers["x-shopify-access-token"] == "shpat_test" for r in shop.received)
        assert paths[1:] == [
            "/admin/api/2026-04/orders.json?limit=250&page_info=p2",
            "/admin/api/2026-04/orders.json?limit=250&page_info=p2",
            "/admin/api/2026-04/orders.json?limit=250&page_info=p2",
            "/admin/api/2026-04/orders.json?limit=250&page_info=p3",
        ]
        assert saved["backfill"]["position"] == {"next_url": page2}
        assert (result.resumed, result.pages, result.stored) == (True, 2, 3)
        external_ids = sorted(o["external_id"] for o in orders_for(api, program["id"]))
        assert external_ids == ["8001", "8002", "8003", "8004", "8005"]
        assert "backfill" not in api.get(f"/api/v1/connectors/{connector['id']}").json()["cursor"]
