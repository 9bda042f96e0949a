"""The simulator's parts on their own: the plan is reproducible, the fake shop
speaks Shopify as partnerloop reads it, the fake CRM speaks HubSpot as
partnerloop's connector reads it, and the reconciliation catches a wrong cent."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from partnerloop.core.clock import utcnow
from partnerloop.integrations.hubspot.connector import CONNECTOR as HUBSPOT
from partnerloop.integrations.shop import ConnectorConfig, Delivery, WebhookRequest
from partnerloop.integrations.shopify.connector import CONNECTOR as SHOPIFY
from partnerloop.orders.snapshots import OrderSnapshot, RefundFacts
from partnerloop.simulator.fake_crm import Contact, FakeHubSpot
from partnerloop.simulator.fake_shop import (
    FakeShop,
    ShopConfig,
    ShopStats,
    order_payload,
    refund_payload,
)
from partnerloop.simulator.plan import Plan, Shape, make_plan
from partnerloop.simulator.reconcile import Expectation, Observed, expected_contact, reconcile
from partnerloop.simulator.scenarios import NAMES, Knobs, build
from tests.factories.connectors import fixture_json

SECRET = "shpss_sim_test"
SHOP = "sim-test.myshopify.com"
CLICK = "clk_01JAAAAAAAAAAAAAAAAAAAAAAA"
TOKEN = "pat-test"
PLACED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def every_scenario_plan(seed: int = 5) -> list[Plan]:
    knobs = Knobs(orders=30)
    return [make_plan(name, build(name, knobs).shape, seed=seed) for name in NAMES]


def test_a_seed_makes_the_same_plan_and_another_seed_another() -> None:
    shape = Shape(orders=25, failed_share=0.3, duplicate_copies=3, resend_share=0.3)

    first, again, other = (make_plan("normal", shape, seed=s) for s in (7, 7, 8))

    assert dataclasses.asdict(first.orders[0]) == dataclasses.asdict(again.orders[0])
    assert [dataclasses.asdict(o) for o in first.orders] == [
        dataclasses.asdict(o) for o in again.orders
    ]
    assert [o.order_id for o in first.orders] != [o.order_id for o in other.orders]


def test_each_scenario_plans_what_its_name_says() -> None:
    plans = {plan.name: plan for plan in every_scenario_plan()}

    failed = plans["failed-payments"].orders
    assert {o.status for o in failed} == {"paid", "pending", "cancelled"}
    assert all(o.expected_commission(Decimal("12.5")) is None for o in failed if o.status != "paid")
    duplicates = plans["duplicates"].orders
    assert all(e.copies in (2, 3) for o in duplicates for e in o.events)
    assert any(
        len({e.event_id for e in o.events}) < len(o.events) + 0 or len(o.events) > 2
        for o in duplicates
    )
    first_topics = {o.events[0].topic for o in plans["out-of-order"].orders}
    assert first_topics == {"orders/paid", "refunds/create", "orders/updated"}
    assert all(o.events[0].topic == "orders/create" for o in plans["normal"].orders)
    evidence = {o.evidence for o in plans["normal"].orders}
    assert evidence == {"landing_site", "note_attribute", "coupon", "none"}


# --- the fake shop speaks Shopify -------------------------------------------------------


def _shape_problems(ours: Any, theirs: Any, path: str) -> Iterator[str]:
    """Where our payload has a key Shopify's example lacks, or another JSON type."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key, value in ours.items():
            if key not in theirs:
                yield f"{path}.{key} is not in Shopify's payload"
            else:
                yield from _shape_problems(value, theirs[key], f"{path}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        if ours and theirs:
            for item in ours:
                yield from _shape_problems(item, theirs[0], f"{path}[]")
    elif (
        ours is not None
        and theirs is not None
        and type(ours) is not type(theirs)
        and {type(ours), type(theirs)} != {int, float}
    ):
        yield f"{path}: {type(ours).__name__} where Shopify has {type(theirs).__name__}"


def test_orders_and_refunds_have_shopifys_own_shape() -> None:
    shopify_order = fixture_json("shopify", "docs-example_2026-04_orders_create.json")["response"]
    shopify_refund = fixture_json("shopify", "docs-example_2026-04_refunds_create.json")["response"]
    problems: list[str] = []
    for plan in every_scenario_plan():
        for order in plan.orders:
            order.click_id = CLICK
            for event in order.events:
                if event.refund is not None:
                    payload = refund_payload(order, event.refund, placed_at=PLACED, currency="EUR")
                    problems += _shape_problems(payload, shopify_refund, "refund")
                else:
                    assert event.state is not None
                    payload = order_payload(
                        order, event.state, placed_at=PLACED, currency="EUR", shop_domain=SHOP
                    )
                    problems += _shape_problems(payload, shopify_order, "order")

    assert sorted(set(problems)) == []


def _request(shop: FakeShop, plan_order: Any, event: Any) -> WebhookRequest:
    body = shop.body_of(plan_order, event, placed_at=PLACED)
    sent: dict[str, str] = {}

    class Capture(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            sent.update({k.lower(): v for k, v in request.headers.items()})
            return httpx.Response(200, json={"status": "accepted"})

    with httpx.Client(transport=Capture()) as client:
        shop.post(client, plan_order, event, body)
    return WebhookRequest(method="POST", headers=sent, query={}, body=body)


def test_partnerloop_verifies_and_reads_every_event_as_planned() -> None:
    shop = FakeShop(
        ShopConfig("http://sim", "/hooks/con_x", SECRET, SHOP, "EUR", ["a", "b", "c"]), ShopStats()
    )
    config = ConnectorConfig(
        connector_id="con_x", program_currency="EUR", settings={"shop_domain": SHOP}
    )
    checked = 0
    for plan in every_scenario_plan():
        for order in plan.orders:
            order.click_id = CLICK if order.evidence in ("landing_site", "note_attribute") else None
            for event in order.events:
                request = _request(shop, order, event)
                delivery = SHOPIFY.verify(request, secrets=[SECRET], config=config, now=utcnow())
                assert delivery == Delivery(topic=event.topic, event_id=event.event_id)
                [read] = SHOPIFY.normalise(event.topic, request.body, config=config)
                if event.refund is not None:
                    assert isinstance(read, RefundFacts)
                    assert (read.order_id, read.amount_minor, read.currency) == (
                        str(order.order_id),
                        event.refund.amount_minor,
                        "EUR",
                    )
                else:
                    assert isinstance(read, OrderSnapshot)
                    assert event.state is not None
                    status = {"voided": "cancelled", "pending": "pending"}.get(
                        event.state.financial_status, "paid"
                    )
                    assert (read.order_id, read.subtotal_minor, read.status) == (
                        str(order.order_id),
                        event.state.subtotal_minor,
                        status,
                    )
                    assert read.click_id == order.click_id
                    assert read.coupon_codes == ((order.coupon,) if order.coupon else ())
                    assert read.customer is not None
                    assert read.customer.email == order.shopper.email
                    assert sum(r.amount_minor for r in read.refunds) == sum(
                        r.amount_minor for r in event.state.refunded
                    )
                checked += 1
    assert checked > 300


# --- the fake CRM speaks HubSpot --------------------------------------------------------


@pytest.fixture
def crm() -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot(token=TOKEN)
    try:
        yield fake
    finally:
        fake.stop()


def _upsert(crm: FakeHubSpot, contacts: list[dict[str, Any]], token: str = TOKEN) -> Any:
    with httpx.Client(timeout=5.0) as client:
        return HUBSPOT.upsert_contacts(
            client,
            settings={"api_base_url": crm.url},
            credentials={"access_token": token},
            contacts=contacts,
            now=utcnow(),
        )


def test_the_fake_crm_upserts_by_email_ignoring_case_as_hubspot_does(crm: FakeHubSpot) -> None:
    first = _upsert(crm, [{"email": "Ada@Example.com", "firstname": "Ada"}])
    second = _upsert(crm, [{"email": "ada@example.com", "partnerloop_order_count": 2}])

    assert first.outcome.ok
    assert second.outcome.ok
    assert first.remote_ids == second.remote_ids == {"ada@example.com": "1001"}
    [contact] = crm.snapshot()
    assert contact.properties == {
        "email": "ada@example.com",
        "firstname": "Ada",
        "partnerloop_order_count": "2",  # HubSpot holds every value as text
    }
    assert contact.writes == 2


def test_the_fake_crm_answers_hubspots_refusals(crm: FakeHubSpot) -> None:
    hubspot_429 = fixture_json("hubspot", "429_daily_docs-example.json")

    wrong_token = _upsert(crm, [{"email": "a@example.com"}], token="pat-wrong")
    crm.storm(30)
    with httpx.Client() as client:
        raw = client.post(
            f"{crm.url}/crm/v3/objects/contacts/batch/upsert",
            json={"inputs": []},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    storm = _upsert(crm, [{"email": "a@example.com"}])

    assert wrong_token.outcome.status_code == 401
    assert not wrong_token.outcome.permanent
    assert raw.status_code == 429
    assert set(raw.json()) == set(hubspot_429)
    assert raw.json()["policyName"] == "SECONDLY"
    assert raw.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert storm.outcome.status_code == 429
    assert storm.outcome.retry_after == 1.0
    assert storm.pause_until is None  # a per-second limit, not the daily quota
    assert crm.snapshot() == []


@pytest.mark.parametrize("mode", ["refused", "503"])
def test_the_fake_crm_goes_down_and_comes_back(crm: FakeHubSpot, mode: str) -> None:
    crm.outage(0.5, mode=mode)
    down = _upsert(crm, [{"email": "b@example.com"}])
    assert not crm.is_up()
    deadline = time.monotonic() + 5
    while not crm.is_up() and time.monotonic() < deadline:
        time.sleep(0.05)
    up = _upsert(crm, [{"email": "b@example.com"}])

    assert not down.outcome.ok
    assert not down.outcome.permanent
    assert ("could not reach HubSpot" in str(down.outcome.error)) == (mode == "refused")
    assert up.outcome.ok
    assert [c.properties["email"] for c in crm.snapshot()] == ["b@example.com"]


# --- the reconciliation -----------------------------------------------------------------


def _perfect(plan: Plan, expect: Expectation) -> Observed:
    """What a flawless instance would hold for this plan."""
    orders, commissions = [], []
    for order in plan.orders:
        orders.append(
            {
                "external_id": str(order.order_id),
                "affiliate_id": None
                if order.affiliate is None
                else expect.affiliate_ids[order.affiliate],
                "status": order.status,
                "amount": f"{order.subtotal_minor / 100:.2f}",
                "refunded_amount": f"{order.refunded_minor / 100:.2f}",
            }
        )
        wanted = order.expected_commission(expect.rate)
        if wanted is not None:
            commissions.append({"order_id": str(order.order_id), "amount": f"{wanted / 100:.2f}"})
    contacts = []
    for shopper in {s.email.lower(): s for s in plan.shoppers}.values():
        mine = [o for o in plan.orders if o.shopper.email.lower() == shopper.email.lower()]
        contacts.append(Contact("1", expected_contact(shopper, mine, expect), "", "", 0.0))
    return Observed(orders, commissions, contacts, {"inbound events rejected": 0})


def test_a_flawless_instance_passes_and_one_cent_off_fails() -> None:
    plan = make_plan("normal", Shape(orders=20, failed_share=0.2), seed=3)
    expect = Expectation(Decimal("12.5"), "EUR", ["aff_1", "aff_2", "aff_3"], ["A", "B", "C"])
    seen = _perfect(plan, expect)
    assert [v.line() for v in reconcile(plan, expect, seen) if not v.passed] == []

    first = seen.commissions[0]
    number = next(o.number for o in plan.orders if str(o.order_id) == first["order_id"])
    right = first["amount"]
    first["amount"] = f"{Decimal(right) - Decimal('0.01')}"
    verdicts = {v.name: v for v in reconcile(plan, expect, seen)}

    line = verdicts["every commission has the right amount (none when unpaid)"].line()
    assert line.startswith("FAIL  every commission has the right amount (none when unpaid): 19/20")
    assert f"order #{number}: ['{first['amount']}'] instead of [{right}]" in line
    assert [name for name, v in verdicts.items() if not v.passed] == [
        "every commission has the right amount (none when unpaid)"
    ]


def test_the_expected_commission_follows_the_half_even_rule() -> None:
    plan = make_plan("normal", Shape(orders=1, organic_share=0.0), seed=1)
    order = plan.orders[0]
    order.subtotal_minor, order.refunded_minor = 1204, 0  # 12.5 % = 150.5 cents
    assert order.expected_commission(Decimal("12.5")) == 150
    order.subtotal_minor = 1212  # 151.5 cents
    assert order.expected_commission(Decimal("12.5")) == 152
    assert json.dumps(order.expected_commission(Decimal("12.5"))) == "152"
