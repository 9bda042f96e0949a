"""Stripe: Stripe-Signature webhooks through real HTTP, normalised and applied by the
worker, and backfill from /v1/events; on SQLite and PostgreSQL.

Resources are Stripe's own API fixtures (stripe/openapi fixtures3.json), sent as
the `data.object` of an event envelope exactly as in the file. Where a fixture
cannot become an order (the checkout session there is open and unpaid, without
amount or currency), the test says so and then uses a copy with only the named
fields changed.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from partnerloop.core.db import transaction
from partnerloop.integrations.shop import (
    BadSignature,
    ConnectorConfig,
    Delivery,
    Ignored,
    SubscriptionEnded,
    Unusable,
    WebhookRequest,
)
from partnerloop.integrations.stripe.connector import CONNECTOR, signature_of, stripe_minor
from partnerloop.orders.models import Customer, Subscription
from partnerloop.orders.snapshots import OrderSnapshot, RefundFacts
from partnerloop.programs.models import Program
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
from tests.factories.tracking import click, create_link_api
from tests.support.http import Reply, ScriptedServer

RESOURCES: dict[str, Any] = fixture_json("stripe", "openapi_fixtures3.json")["resources"]
CONFIG = ConnectorConfig(connector_id="connector_unit", program_currency="USD", settings={})

# stripe-python tests/test_webhook.py DUMMY_WEBHOOK_PAYLOAD (125 bytes), NOTES.md section 4.
DUMMY_WEBHOOK_PAYLOAD = b"""{
  "id": "evt_test_webhook",
  "object": "event",
  "data": { "object": { "id": "rdr_123", "object": "terminal.reader" } }
}"""
NOTES_SIGNATURE = "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"


# --- helpers ---------------------------------------------------------------------------


def resource(name: str) -> dict[str, Any]:
    return copy.deepcopy(RESOURCES[name])


def envelope(
    obj: dict[str, Any],
    type_: str,
    *,
    event_id: str | None = None,
    created: int | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": created or int(time.time()),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def header(secret: str, body: bytes, *, t: int | None = None) -> str:
    stamp = str(t if t is not None else int(time.time()))
    return f"t={stamp},v1={signature_of(secret, stamp, body)}"


def post(
    api: httpx.Client,
    connector: dict[str, Any],
    event: dict[str, Any] | bytes,
    *,
    secret: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    sent = {"Content-Type": "application/json"}
    sent.update(headers if headers is not None else {"Stripe-Signature": header(secret, body)})
    return api.post(hook_path(connector), content=body, headers=sent)


def setup(
    api: httpx.Client, *, credentials: dict[str, Any] | None = None, **settings: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    program = create_program_api(api, currency="USD")
    secret = f"whsec_{secrets.token_hex(16)}"
    connector = create_connector_api(
        api, program["id"], "stripe", secret=secret, settings=settings, credentials=credentials
    )
    return program, connector, secret


def affiliate_click(api: httpx.Client, program_id: str) -> tuple[str, str]:
    affiliate = create_affiliate_api(api, program_id)
    link = create_link_api(api, program_id, affiliate["id"])
    return affiliate["id"], click(api, link["code"])


def conversions(api: httpx.Client, program_id: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/conversions", params={"program_id": program_id})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def commission_amounts(api: httpx.Client, program_id: str, order_id: str) -> list[str]:
    [conversion] = [c for c in conversions(api, program_id) if c["order_id"] == order_id]
    return [c["amount"] for c in conversion["commissions"]]


def paid_session(
    *,
    payment_intent: str | None = None,
    click_id: str | None = None,
    base: int = 2000,
    customer: str | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """The fixture checkout session, completed and paid: amount_total = base + the
    fixture's own amount_tax (1424534716); its amount_discount (406046392) stays."""
    session = resource("checkout.session")
    tax = session["total_details"]["amount_tax"]
    session.update(
        {
            "amount_total": base + tax,
            "currency": "usd",
            "payment_status": "paid",
            "status": "complete",
            "created": int(time.time()),
            "client_reference_id": click_id,
            "customer": customer,
        }
    )
    if payment_intent is not None:
        session["payment_intent"] = payment_intent
    session.update(changes)
    return session


def subscription_invoice(
    invoice_id: str, *, subscription: str, customer: str, billing_reason: str, total: int
) -> dict[str, Any]:
    invoice = resource("invoice")
    invoice.update(
        {
            "id": invoice_id,
            "customer": customer,
            "billing_reason": billing_reason,
            "total": total,
            "subtotal": total,
            "total_excluding_tax": total,
            "created": int(time.time()),
        }
    )
    invoice["lines"]["data"][0]["amount"] = total
    invoice["parent"]["subscription_details"]["subscription"] = subscription
    return invoice


def subscription_checkout(
    click_id: str, first_invoice_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A paid checkout session of a new subscription and the subscription's first
    invoice (subscription_create, 20.00 before tax), the order it becomes."""
    sub, customer = f"sub_{secrets.token_hex(6)}", f"cus_{secrets.token_hex(6)}"
    session = paid_session(
        click_id=click_id,
        customer=customer,
        mode="subscription",
        payment_intent=None,
        invoice=first_invoice_id,
        subscription=sub,
    )
    first = subscription_invoice(
        first_invoice_id,
        subscription=sub,
        customer=customer,
        billing_reason="subscription_create",
        total=session["amount_total"],
    )
    first["total_excluding_tax"] = 2000
    return session, first


def refunded_charge(
    payment_intent: str | None, refunds: list[dict[str, Any]], *, amount_refunded: int
) -> dict[str, Any]:
    charge = resource("charge")
    charge.update(
        {
            "payment_intent": payment_intent,
            "amount": 1_424_536_716,
            "amount_captured": 1_424_536_716,
            "amount_refunded": amount_refunded,
            "refunded": True,
        }
    )
    charge["refunds"]["data"] = refunds
    return charge


# --- verify (unit) -----------------------------------------------------------------------


def _request(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {} if signature is None else {"stripe-signature": signature}
    return WebhookRequest(method="POST", headers=headers, query={}, body=body)


def test_notes_vector_verifies_within_tolerance_only() -> None:
    assert len(DUMMY_WEBHOOK_PAYLOAD) == 125
    given = f"t=1700000000,v1={NOTES_SIGNATURE}"
    assert signature_of("whsec_test_secret", "1700000000", DUMMY_WEBHOOK_PAYLOAD) == NOTES_SIGNATURE
    t = datetime.fromtimestamp(1700000000, tz=UTC)

    delivery = CONNECTOR.verify(
        _request(DUMMY_WEBHOOK_PAYLOAD, given),
        secrets=["whsec_test_secret"],
        config=CONFIG,
        now=t + timedelta(seconds=10),
    )

    assert delivery == Delivery(topic="unknown", event_id="evt_test_webhook")
    with pytest.raises(BadSignature, match="more than 300 s old"):
        CONNECTOR.verify(
            _request(DUMMY_WEBHOOK_PAYLOAD, given),
            secrets=["whsec_test_secret"],
            config=CONFIG,
            now=t + timedelta(seconds=301),
        )


def test_any_v1_and_any_secret_match_v0_is_ignored() -> None:
    now = datetime.fromtimestamp(1700000000, tz=UTC)
    rolled = f"t=1700000000,v1={'0' * 64},v1={NOTES_SIGNATURE},v0={'1' * 64}"
    only_v0 = f"t=1700000000,v0={NOTES_SIGNATURE}"

    assert CONNECTOR.verify(
        _request(DUMMY_WEBHOOK_PAYLOAD, rolled),
        secrets=["whsec_new", "whsec_test_secret"],
        config=CONFIG,
        now=now,
    ) == Delivery(topic="unknown", event_id="evt_test_webhook")
    for bad, reason in (
        (only_v0, "malformed"),
        (None, "missing"),
        ("t=abc,v1=00", "malformed"),
        (f"v1={NOTES_SIGNATURE}", "malformed"),
        (f"t=1700000000,v1={NOTES_SIGNATURE}", "does not match"),
    ):
        with pytest.raises(BadSignature, match=reason):
            CONNECTOR.verify(
                _request(DUMMY_WEBHOOK_PAYLOAD, bad),
                secrets=["whsec_other"] if reason == "does not match" else ["whsec_test_secret"],
                config=CONFIG,
                now=now,
            )


def test_signed_non_json_and_thin_events_are_stored_then_rejected_with_reason() -> None:
    now = datetime.fromtimestamp(1700000000, tz=UTC)
    thin = json.dumps(
        {
            "id": "evt_234",
            "object": "v2.core.event",
            "type": "v1.billing.meter.error_report_triggered",
            "livemode": True,
            "created": "2022-02-15T00:27:45.330Z",
        }
    ).encode()

    text = CONNECTOR.verify(
        _request(b"not json", header("whsec_s", b"not json", t=1700000000)),
        secrets=["whsec_s"],
        config=CONFIG,
        now=now,
    )
    thin_delivery = CONNECTOR.verify(
        _request(thin, header("whsec_s", thin, t=1700000000)),
        secrets=["whsec_s"],
        config=CONFIG,
        now=now,
    )

    assert isinstance(text, Delivery)
    assert text.topic == "unknown"
    assert text.event_id.startswith("sha256:")
    assert thin_delivery == Delivery(
        topic="v1.billing.meter.error_report_triggered", event_id="evt_234"
    )
    with pytest.raises(Unusable, match="thin event"):
        CONNECTOR.normalise(thin_delivery.topic, thin, config=CONFIG)
    with pytest.raises(Unusable, match="malformed JSON"):
        CONNECTOR.normalise("unknown", b"not json", config=CONFIG)


def test_normalise_fixture_resources_by_hand() -> None:
    invoice = json.dumps(envelope(resource("invoice"), "invoice.paid", created=1700000000))
    [snapshot] = CONNECTOR.normalise("invoice.paid", invoice.encode(), config=CONFIG)
    assert isinstance(snapshot, OrderSnapshot)
    assert (
        snapshot.order_id,
        snapshot.currency,
        snapshot.subtotal_minor,
        snapshot.total_minor,
        snapshot.tax_minor,
        snapshot.shipping_minor,
        snapshot.discount_minor,
        snapshot.subscription_id,
        snapshot.is_renewal,
        snapshot.status,
    ) == ("in_1Pgc6tB7WZ01zgkWu9fdqL6I", "USD", 1000, 1000, 0, 0, 0, "subscription", False, "paid")
    assert snapshot.customer is not None
    assert snapshot.customer.external_id == "cus_QXg1o8vcGmoR32"
    assert [(line.line_id, line.quantity, line.total_minor) for line in snapshot.lines] == [
        ("il_1Pgc6sB7WZ01zgkWFnxLrLCq", 1, 1000)
    ]

    session = json.dumps(envelope(resource("checkout.session"), "checkout.session.completed"))
    with pytest.raises(Unusable, match="has no amount_total"):
        CONNECTOR.normalise("checkout.session.completed", session.encode(), config=CONFIG)

    charge = json.dumps(envelope(resource("charge"), "charge.refunded"))
    assert CONNECTOR.normalise("charge.refunded", charge.encode(), config=CONFIG) == [
        RefundFacts(
            refund_id="ch_1PgafuB7WZ01zgkWXYmPNZs8:0",
            order_id="ch_1PgafuB7WZ01zgkWXYmPNZs8",
            amount_minor=0,
            currency="USD",
        )
    ]

    ended = json.dumps(envelope(resource("subscription"), "customer.subscription.deleted"))
    assert CONNECTOR.normalise("customer.subscription.deleted", ended.encode(), config=CONFIG) == [
        SubscriptionEnded("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw", datetime.fromtimestamp(1234567890, UTC))
    ]

    one_off = resource("invoice")
    one_off["parent"] = None
    [ignored] = CONNECTOR.normalise(
        "invoice.paid", json.dumps(envelope(one_off, "invoice.paid")).encode(), config=CONFIG
    )
    assert isinstance(ignored, Ignored)


def test_stripe_minor_units_where_stripe_differs_from_iso() -> None:
    assert stripe_minor(500, "JPY", what="x") == 500  # zero-decimal at Stripe and ISO
    assert stripe_minor(1999, "USD", what="x") == 1999
    assert stripe_minor(50000, "ISK", what="x") == 500  # two-decimal at Stripe, none in ISO
    assert stripe_minor(500, "MGA", what="x") == 50000  # zero-decimal at Stripe, two in ISO
    assert stripe_minor(12340, "KWD", what="x") == 12340
    with pytest.raises(Unusable, match="fraction"):
        stripe_minor(50050, "ISK", what="x")
    with pytest.raises(Unusable, match="not an integer"):
        stripe_minor("19.99", "USD", what="x")


# --- webhooks through real HTTP ----------------------------------------------------------


def test_fixture_invoice_paid_becomes_an_order(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        invoice = resource("invoice")

        response = post(api, connector, envelope(invoice, "invoice.paid"), secret=secret)

        assert (response.status_code, response.json()["status"]) == (200, "accepted")
        drain(server.runtime)
        [order] = orders_for(api, program["id"], external_id=invoice["id"])
        assert order["external_id"] == "in_1Pgc6tB7WZ01zgkWu9fdqL6I" == invoice["id"]
        assert (order["amount"], order["total"], order["tax"], order["shipping"]) == (
            "10.00",
            "10.00",
            "0.00",
            "0.00",
        )
        assert invoice["total"] == 1000
        assert invoice["currency"] == "usd"
        assert (order["currency"], order["status"], order["source"]) == ("USD", "paid", "stripe")
        assert (order["subscription_id"], order["is_renewal"]) == (
            invoice["parent"]["subscription_details"]["subscription"],
            False,
        )
        assert order["customer"]["external_id"] == "cus_QXg1o8vcGmoR32" == invoice["customer"]
        assert [(i["id"], i["quantity"], i["total"]) for i in order["items"]] == [
            ("il_1Pgc6sB7WZ01zgkWFnxLrLCq", 1, "10.00")
        ]
        with server.runtime.sessions() as db:
            [subscription] = db.scalars(
                select(Subscription).where(Subscription.program_id == program["id"])
            )
            assert (subscription.subscription_id, subscription.status) == ("subscription", "active")


def test_fixture_checkout_session_is_quarantined_then_a_paid_copy_is_an_order(
    server: Server,
) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        fixture = resource("checkout.session")
        assert fixture["amount_total"] is None
        assert fixture["payment_status"] == "unpaid"

        post(api, connector, envelope(fixture, "checkout.session.completed"), secret=secret)
        drain(server.runtime)
        [event] = inbound_events(api, program["id"])
        assert event["state"] == "rejected"
        assert event["last_error"] == (
            "checkout session cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY "
            "has no amount_total"
        )

        session = paid_session(customer="cus_checkout_1")
        post(api, connector, envelope(session, "checkout.session.completed"), secret=secret)
        drain(server.runtime)

        # Payment mode: the order is the PaymentIntent, as charge.refunded names it.
        [order] = orders_for(api, program["id"], external_id=fixture["payment_intent"])
        assert order["external_id"] == "pi_1PgafyB7WZ01zgkWSjxsAJo3"
        assert (order["amount"], order["total"], order["tax"], order["discount"]) == (
            "20.00",
            "14245367.16",
            "14245347.16",
            "4060463.92",
        )
        assert order["shipping"] == "0.00"  # total_details.amount_shipping is null
        assert (order["status"], order["currency"], order["affiliate_id"]) == ("paid", "USD", None)
        assert order["customer"]["external_id"] == "cus_checkout_1"
        assert order["customer"]["email"] == fixture["customer_details"]["email"]


def test_fixture_charge_refunded_and_its_refund_reduce_the_order(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        affiliate_id, click_id = affiliate_click(api, program["id"])
        pi = "pi_1PgafyB7WZ01zgkWSjxsAJo3"
        post(
            api,
            connector,
            envelope(paid_session(click_id=click_id), "checkout.session.completed"),
            secret=secret,
        )
        # The fixture charge as it is: nothing refunded, no payment intent.
        fixture_charge = resource("charge")
        post(api, connector, envelope(fixture_charge, "charge.refunded"), secret=secret)
        drain(server.runtime)
        assert orders_for(api, program["id"], external_id=fixture_charge["id"]) == []
        assert {e["state"] for e in inbound_events(api, program["id"])} == {"processed"}
        assert commission_amounts(api, program["id"], pi) == ["2.00"]

        # The fixture refund (re_..., 100 = 1.00 USD) inside its charge, now of this order.
        refund = resource("refund")
        charge = refunded_charge(pi, [refund], amount_refunded=refund["amount"])
        post(api, connector, envelope(charge, "charge.refunded"), secret=secret)
        drain(server.runtime)

        [order] = orders_for(api, program["id"], external_id=pi)
        assert (order["refunded_amount"], order["affiliate_id"]) == ("1.00", affiliate_id)
        assert refund["amount"] == 100
        assert refund["id"] == "re_1Pgc72B7WZ01zgkWqPvrRrPE"
        assert commission_amounts(api, program["id"], pi) == ["1.90"]


def test_bad_signatures_are_401_and_store_nothing(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        event = envelope(resource("invoice"), "invoice.paid")
        body = json.dumps(event).encode()

        wrong = post(
            api,
            connector,
            body,
            secret=secret,
            headers={"Stripe-Signature": header("whsec_wrong", body)},
        )
        missing = post(api, connector, body, secret=secret, headers={})
        old = post(
            api,
            connector,
            body,
            secret=secret,
            headers={"Stripe-Signature": header(secret, body, t=int(time.time()) - 301)},
        )
        malformed = post(
            api, connector, body, secret=secret, headers={"Stripe-Signature": "v1=abc"}
        )
        tampered = post(
            api,
            connector,
            body + b" ",
            secret=secret,
            headers={"Stripe-Signature": header(secret, body)},
        )

        assert [r.status_code for r in (wrong, missing, old, malformed, tampered)] == [401] * 5
        assert {r.json()["code"] for r in (wrong, missing, old)} == {"invalid_signature"}
        drain(server.runtime)
        assert inbound_events(api, program["id"]) == []
        assert orders_for(api, program["id"]) == []


def test_same_event_three_times_is_one_order_with_one_click_commission(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        affiliate_id, click_id = affiliate_click(api, program["id"])
        event = envelope(
            paid_session(payment_intent="pi_three_times", click_id=click_id),
            "checkout.session.completed",
        )

        answers = [post(api, connector, event, secret=secret).json() for _ in range(3)]
        drain(server.runtime)

        assert [a["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
        assert len({a["event_id"] for a in answers}) == 1
        [order] = orders_for(api, program["id"])
        assert (order["external_id"], order["affiliate_id"], order["click_id"]) == (
            "pi_three_times",
            affiliate_id,
            click_id,
        )
        [conversion] = conversions(api, program["id"])
        assert conversion["attribution"] == "click"
        assert [c["amount"] for c in conversion["commissions"]] == ["2.00"]  # 10 % of 20.00


def test_click_id_in_metadata_and_async_payment(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        affiliate_id, click_id = affiliate_click(api, program["id"])
        session = paid_session(
            payment_intent="pi_async",
            click_id="merchant-user-42",  # the merchant's own reference: not ours
            payment_status="unpaid",
            metadata={"plclid": click_id},
        )
        created = int(time.time())
        post(
            api,
            connector,
            envelope(session, "checkout.session.completed", created=created),
            secret=secret,
        )
        drain(server.runtime)
        [pending] = orders_for(api, program["id"])
        assert (pending["status"], pending["affiliate_id"]) == ("pending", affiliate_id)
        assert conversions(api, program["id"])[0]["commissions"] == []

        session["payment_status"] = "paid"
        post(
            api,
            connector,
            envelope(session, "checkout.session.async_payment_succeeded", created=created + 5),
            secret=secret,
        )
        drain(server.runtime)
        [paid] = orders_for(api, program["id"])
        assert paid["status"] == "paid"
        assert commission_amounts(api, program["id"], "pi_async") == ["2.00"]


@pytest.mark.parametrize("recurring", [False, True])
def test_renewal_earns_only_with_recurring_commission(server: Server, recurring: bool) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        if recurring:
            with transaction(server.runtime.sessions) as db:
                db.get_one(Program, program["id"]).recurring_commission = True
        affiliate_id, click_id = affiliate_click(api, program["id"])
        session, first = subscription_checkout(click_id, "in_first")
        sub, customer = session["subscription"], session["customer"]
        now = int(time.time())
        post(
            api,
            connector,
            envelope(session, "checkout.session.completed", created=now),
            secret=secret,
        )
        post(api, connector, envelope(first, "invoice.paid", created=now + 1), secret=secret)
        drain(server.runtime)

        # The checkout session and its first invoice are one order, one commission.
        [order] = orders_for(api, program["id"])
        assert (order["external_id"], order["subscription_id"], order["is_renewal"]) == (
            "in_first",
            sub,
            False,
        )
        assert commission_amounts(api, program["id"], "in_first") == ["2.00"]

        renewal = subscription_invoice(
            "in_renewal",
            subscription=sub,
            customer=customer,
            billing_reason="subscription_cycle",
            total=3000,
        )
        post(api, connector, envelope(renewal, "invoice.paid"), secret=secret)
        drain(server.runtime)

        [again] = orders_for(api, program["id"], external_id="in_renewal")
        assert (again["is_renewal"], again["subscription_id"], again["affiliate_id"]) == (
            True,
            sub,
            affiliate_id,
        )
        assert again["amount"] == "30.00"
        assert commission_amounts(api, program["id"], "in_renewal") == (
            ["3.00"] if recurring else []
        )


def test_first_invoice_before_its_checkout_session_is_attributed_late(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        affiliate_id, click_id = affiliate_click(api, program["id"])
        session, first = subscription_checkout(click_id, "in_early")
        now = int(time.time())
        # invoice.paid first (and the later event), then the older session event.
        post(api, connector, envelope(first, "invoice.paid", created=now + 1), secret=secret)
        drain(server.runtime)
        [unattributed] = orders_for(api, program["id"])
        assert unattributed["affiliate_id"] is None
        post(
            api,
            connector,
            envelope(session, "checkout.session.completed", created=now),
            secret=secret,
        )
        drain(server.runtime)

        [order] = orders_for(api, program["id"])
        assert (order["external_id"], order["affiliate_id"], order["amount"]) == (
            "in_early",
            affiliate_id,
            "20.00",
        )
        assert commission_amounts(api, program["id"], "in_early") == ["2.00"]


def test_refund_amounts_from_previous_attributes_and_refund_before_order(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        _, click_id = affiliate_click(api, program["id"])
        pi = f"pi_{secrets.token_hex(6)}"
        charge = refunded_charge(pi, [], amount_refunded=500)
        # The refund arrives before its order.
        post(
            api,
            connector,
            envelope(charge, "charge.refunded", previous={"amount_refunded": 0}),
            secret=secret,
        )
        drain(server.runtime)
        assert orders_for(api, program["id"]) == []

        post(
            api,
            connector,
            envelope(
                paid_session(payment_intent=pi, click_id=click_id), "checkout.session.completed"
            ),
            secret=secret,
        )
        drain(server.runtime)
        [order] = orders_for(api, program["id"], external_id=pi)
        assert order["refunded_amount"] == "5.00"
        assert commission_amounts(api, program["id"], pi) == ["1.50"]

        # A second partial refund: only what this event added (800 - 500) counts.
        charge = refunded_charge(pi, [], amount_refunded=800)
        post(
            api,
            connector,
            envelope(charge, "charge.refunded", previous={"amount_refunded": 500}),
            secret=secret,
        )
        drain(server.runtime)
        [order] = orders_for(api, program["id"], external_id=pi)
        assert order["refunded_amount"] == "8.00"
        assert commission_amounts(api, program["id"], pi) == ["1.20"]


def test_subscription_deleted_and_customer_created_are_recorded(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        subscription = resource("subscription")
        post(api, connector, envelope(subscription, "customer.subscription.deleted"), secret=secret)
        # stripe-java's customer.created event, byte for byte.
        post(
            api,
            connector,
            fixture_bytes("stripe", "stripe-java_event_customer_created.json"),
            secret=secret,
        )
        drain(server.runtime)

        assert {e["state"] for e in inbound_events(api, program["id"])} == {"processed"}
        with server.runtime.sessions() as db:
            [ended] = db.scalars(
                select(Subscription).where(Subscription.program_id == program["id"])
            )
            assert (ended.subscription_id, ended.status) == (
                "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
                "ended",
            )
            assert ended.ended_at == datetime.fromtimestamp(subscription["ended_at"], UTC)
            [customer] = db.scalars(select(Customer).where(Customer.program_id == program["id"]))
            assert customer.external_id == "cus_00000000000000"


def test_unknown_event_type_is_rejected_with_reason_and_replayable(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        plan_created = resource("event")  # a whole event of Stripe's fixtures: plan.created
        assert plan_created["type"] == "plan.created"

        response = post(api, connector, plan_created, secret=secret)
        drain(server.runtime)

        assert response.status_code == 200
        [event] = inbound_events(api, program["id"])
        assert (event["state"], event["topic"], event["external_id"]) == (
            "rejected",
            "plan.created",
            plan_created["id"],
        )
        assert event["last_error"] == "unknown topic 'plan.created'"
        replay = api.post(f"/api/v1/inbound-events/{event['id']}/replay")
        assert (replay.status_code, replay.json()["state"]) == (200, "pending")


# --- backfill ----------------------------------------------------------------------------


def _page(events: list[dict[str, Any]], *, has_more: bool) -> Reply:
    body = {"object": "list", "data": events, "has_more": has_more, "url": "/v1/events"}
    return Reply(headers={"Content-Type": "application/json"}, body=json.dumps(body).encode())


def test_backfill_pages_resume_after_interruption_without_duplicates(server: Server) -> None:
    with server.client() as api:
        since = datetime.now(UTC) - timedelta(days=7)
        now = int(time.time())
        events = [
            envelope(
                paid_session(payment_intent=f"pi_bf_{n}"),
                "checkout.session.completed",
                event_id=f"evt_bf_{n}_{secrets.token_hex(4)}",
                created=now - n,
            )
            for n in range(4)
        ]
        pages = [
            _page(events[:2], has_more=True),
            Reply(status=404, body=b"{}"),
            _page(events[2:3], has_more=True),
            _page(events[3:], has_more=False),
        ]
        with ScriptedServer(pages).running() as stripe:
            program, connector, secret = setup(
                api, credentials={"api_key": "sk_test_123"}, api_base_url=stripe.url
            )
            # One of the events was also delivered by webhook.
            post(api, connector, events[0], secret=secret)

            with pytest.raises(httpx.HTTPStatusError):
                run_backfill(server, connector["id"], since)
            result = run_backfill(server, connector["id"], since)

        assert (result.resumed, result.pages, result.stored) == (True, 2, 2)
        paths = [r.path for r in stripe.received]
        assert len(paths) == 4
        assert all(r.headers["authorization"] == "Bearer sk_test_123" for r in stripe.received)
        assert paths[0].startswith("/v1/events?types%5B%5D=checkout.session.completed")
        assert "types%5B%5D=invoice.paid" in paths[0]
        assert "types%5B%5D=charge.refunded" in paths[0]
        assert "types%5B%5D=customer.subscription.deleted" in paths[0]
        assert f"created%5Bgte%5D={int(since.timestamp())}" in paths[0]
        assert "limit=100" in paths[0]
        assert "starting_after" not in paths[0]
        assert paths[1].endswith(f"starting_after={events[1]['id']}")
        assert paths[2].endswith(f"starting_after={events[1]['id']}")  # resumed here
        assert paths[3].endswith(f"starting_after={events[2]['id']}")

        drain(server.runtime)
        stored = inbound_events(api, program["id"])
        assert sorted(e["external_id"] for e in stored) == sorted(e["id"] for e in events)
        assert {e["state"] for e in stored} == {"processed"}
        assert sorted(o["external_id"] for o in orders_for(api, program["id"])) == [
            "pi_bf_0",
            "pi_bf_1",
            "pi_bf_2",
            "pi_bf_3",
        ]


def test_backfill_needs_an_api_key(server: Server) -> None:
    with server.client() as api:
        _, connector, _ = setup(api)
        with pytest.raises(Exception, match="api_key"):
            run_backfill(server, connector["id"], datetime.now(UTC))
