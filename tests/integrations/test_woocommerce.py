"""WooCommerce: signed webhooks over real HTTP into the inbox, through the worker
into orders; the unsigned ping; refunds inside order.updated; backfill through
the REST API (a scripted WooCommerce on loopback)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from partnerloop.integrations.shop import (
    Answer,
    BadSignature,
    ConnectorConfig,
    Delivery,
    Ignored,
    Unusable,
    WebhookRequest,
)
from partnerloop.integrations.woocommerce.connector import CONNECTOR, specialchars_decode
from partnerloop.orders.snapshots import Cancellation
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

VENDOR = "woocommerce"
CREATE = "rest-v3_order_create-response.json"
UPDATE = "rest-v3_order_update-response.json"
BATCH = "rest-v3_orders_batch-response.json"
CUSTOMER = "rest-v3_customer_create-response.json"
# WordPress keeps the secret HTML-escaped; WooCommerce signs with the decoded one.
SECRET = "woo&amp;secret"
SIGNING_KEY = b"woo&secret"
CONFIG = ConnectorConfig(
    connector_id="con_test", program_currency="USD", settings={"store_url": "https://example.com"}
)


def sign(body: bytes, key: bytes = SIGNING_KEY) -> str:
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def wc_headers(topic: str, body: bytes, *, key: bytes = SIGNING_KEY) -> dict[str, str]:
    resource, event = topic.split(".", 1)
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/10.2.1 Hookshot (WordPress/6.8.3)",
        "X-WC-Webhook-Source": "https://example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign(body, key),
        "X-WC-Webhook-ID": "31",
        "X-WC-Webhook-Delivery-ID": secrets.token_hex(16),
    }


def deliver(
    api: httpx.Client, connector: dict[str, Any], topic: str, body: bytes
) -> httpx.Response:
    response = api.post(hook_path(connector), content=body, headers=wc_headers(topic, body))
    assert response.status_code == 200, response.text
    return response


def encode(order: Any) -> bytes:
    """Like wp_json_encode: compact JSON, "/" escaped."""
    return json.dumps(order, separators=(",", ":")).replace("/", "\\/").encode()


def setup_shop(api: httpx.Client, **settings: str) -> tuple[dict[str, Any], dict[str, Any]]:
    program = create_program_api(api, currency="USD")
    connector = create_connector_api(
        api,
        program["id"],
        "woocommerce",
        secret=SECRET,
        settings={"store_url": "https://example.com", **settings},
        credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"},
    )
    return program, connector


def the_order(api: httpx.Client, program_id: str, order_id: int | str) -> dict[str, Any]:
    [order] = orders_for(api, program_id, external_id=str(order_id))
    return order


def commissions(api: httpx.Client, program_id: str, order_id: str) -> list[str]:
    response = api.get("/api/v1/conversions", params={"program_id": program_id})
    assert response.status_code == 200, response.text
    [conversion] = [c for c in response.json()["items"] if c["order_id"] == order_id]
    return [c["amount"] for c in conversion["commissions"]]


def gmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- verify, without the server ------------------------------------------------------------


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(
        method=method, headers={k.lower(): v for k, v in headers.items()}, query={}, body=body
    )


def test_the_notes_signature_vector_verifies() -> None:
    body = b'{"id":727,"status":"processing"}'
    signature = "h3cyxfEye4R+394kgMWXVlreiu8mpF2gwNbFxDpImz0="
    assert sign(body, b"woo_test_secret") == signature
    headers = {"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Signature": signature}
    now = datetime.now(UTC)

    verified = CONNECTOR.verify(
        request(body, headers), secrets=["woo_test_secret"], config=CONFIG, now=now
    )
    rotated = CONNECTOR.verify(
        request(body, headers), secrets=["new_secret", "woo_test_secret"], config=CONFIG, now=now
    )

    # No date_modified_gmt in this body: the dedupe key is the body's hash.
    assert (
        verified
        == rotated
        == Delivery(topic="order.created", event_id=f"sha256:{hashlib.sha256(body).hexdigest()}")
    )
    state = b'{"id":7,"status":"refunded","date_modified_gmt":"2017-03-22T19:30:35",'
    state += b'"total":"9.00","refunds":[{"id":12,"total":"-1.00"},{"id":11,"total":"-2.00"}]}'
    signed = {**headers, "X-WC-Webhook-Signature": sign(state, b"woo_test_secret")}
    keyed = CONNECTOR.verify(
        request(state, signed), secrets=["woo_test_secret"], config=CONFIG, now=now
    )
    assert isinstance(keyed, Delivery)
    assert keyed.event_id == "order:7:2017-03-22T19:30:35:refunded:9.00:refunds=12,11"
    with pytest.raises(BadSignature):
        CONNECTOR.verify(request(body, headers), secrets=["other"], config=CONFIG, now=now)
    with pytest.raises(BadSignature):
        CONNECTOR.verify(
            request(body + b" ", headers), secrets=["woo_test_secret"], config=CONFIG, now=now
        )


def test_the_secret_is_decoded_like_wp_specialchars_decode() -> None:
    assert specialchars_decode("a&amp;b&lt;c&gt;d&quot;e&#039;f&#x27;g") == "a&b<c>d\"e'f'g"
    # Zero-padded and upper-case hex forms, and one pass only (like PHP's strtr).
    assert specialchars_decode("&#0039;&#X27;&#x0026;&amp;lt;&nbsp;") == "''&&lt;&nbsp;"
    body = b'{"id":1}'
    headers = {"X-WC-Webhook-Topic": "order.deleted", "X-WC-Webhook-Signature": sign(body)}
    verified = CONNECTOR.verify(
        request(body, headers), secrets=[SECRET], config=CONFIG, now=datetime.now(UTC)
    )
    assert verified == Delivery(
        topic="order.deleted", event_id=f"sha256:{hashlib.sha256(body).hexdigest()}"
    )


def test_only_the_real_ping_shape_passes_unsigned() -> None:
    now = datetime.now(UTC)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert CONNECTOR.verify(
        request(b"webhook_id=31", form), secrets=[SECRET], config=CONFIG, now=now
    ) == Answer(200, "ok")
    for body, headers, method in (
        (b"webhook_id=31", {**form, "X-WC-Webhook-Topic": "order.created"}, "POST"),
        (b"webhook_id=31&x=1", form, "POST"),
        (b"webhook_id=abc", form, "POST"),
        (b'{"webhook_id":31}', {"Content-Type": "application/json"}, "POST"),
        (b"webhook_id=31", form, "GET"),
    ):
        with pytest.raises(BadSignature):
            CONNECTOR.verify(
                request(body, headers, method), secrets=[SECRET], config=CONFIG, now=now
            )


def test_normalise_edge_cases() -> None:
    order = fixture_json(VENDOR, CREATE)
    assert CONNECTOR.normalise("order.deleted", b'{"id":727}', config=CONFIG) == [
        Cancellation(order_id="727", reason="deleted or trashed in WooCommerce")
    ]
    assert CONNECTOR.normalise("customer.deleted", b'{"id":25}', config=CONFIG) == [
        Ignored("customer.deleted carries only the id; nothing to apply")
    ]
    with pytest.raises(Unusable, match=r"unknown topic 'product\.created'"):
        CONNECTOR.normalise("product.created", encode(order), config=CONFIG)
    with pytest.raises(Unusable, match="unknown status 'shipped'"):
        CONNECTOR.normalise("order.updated", encode({**order, "status": "shipped"}), config=CONFIG)
    # A unit price that does not divide and a float `price` with excess decimals.
    item = {**order["line_items"][0], "quantity": 3, "subtotal": "10.00", "total": "9.00"}
    item["price"] = 3.3333333333
    [snapshot] = CONNECTOR.normalise(
        "order.updated", encode({**order, "line_items": [item]}), config=CONFIG
    )
    assert snapshot.lines[0].unit_price_minor == 333  # type: ignore[union-attr]
    assert snapshot.lines[0].total_minor == 900  # type: ignore[union-attr]
    # Attribution meta: our key first, else the landing URL of the visit.
    landing = {
        "key": "_wc_order_attribution_session_entry",
        "value": "https://s.test/p?plclid=clk_a&x=1",
    }
    [snapshot] = CONNECTOR.normalise(
        "order.updated", encode({**order, "meta_data": [landing]}), config=CONFIG
    )
    assert snapshot.click_id == "clk_a"  # type: ignore[union-attr]
    meta = [landing, {"key": "_plclid", "value": "clk_b"}]
    [snapshot] = CONNECTOR.normalise(
        "order.updated", encode({**order, "meta_data": meta}), config=CONFIG
    )
    assert snapshot.click_id == "clk_b"  # type: ignore[union-attr]


# --- fixtures through the server -----------------------------------------------------------

JOHN = {"external_id": None, "email": "john.doe@example.com", "name": "John Doe"}
ITEMS_727 = [
    {
        "id": "315",
        "sku": None,
        "name": "Woo Single #1",
        "quantity": 2,
        "unit_price": "3.00",
        "total": "6.00",
    },
    {
        "id": "316",
        "sku": "Bar3",
        "name": "Ship Your Idea &ndash; Color: Black, Size: M Test",
        "quantity": 1,
        "unit_price": "12.00",
        "total": "12.00",
    },
]


@pytest.mark.parametrize(
    ("name", "topic", "updated_at"),
    [
        (CREATE, "order.created", "2017-03-22T19:28:08+00:00"),
        (UPDATE, "order.updated", "2017-03-22T19:30:35+00:00"),
    ],
)
def test_order_fixture_becomes_an_order(
    server: Server, name: str, topic: str, updated_at: str
) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        body = fixture_bytes(VENDOR, name)

        answer = deliver(api, connector, topic, body)
        drain(server.runtime)

        assert answer.json()["status"] == "accepted"
        order = the_order(api, program["id"], 727)
        assert {
            key: order[key]
            for key in (
                "number",
                "source",
                "connector_id",
                "status",
                "amount",
                "total",
                "tax",
                "shipping",
                "discount",
                "refunded_amount",
                "currency",
                "items",
            )
        } == {
            "number": "727",
            "source": "woocommerce",
            "connector_id": connector["id"],
            "status": "paid",  # processing / completed
            "amount": "18.00",  # total 29.35 - total_tax 1.35 - shipping_total 10.00
            "total": "29.35",
            "tax": "1.35",
            "shipping": "10.00",
            "discount": "0.00",
            "refunded_amount": "0.00",
            "currency": "USD",
            "items": ITEMS_727,
        }
        assert {k: order["customer"][k] for k in JOHN} == JOHN  # customer_id 0: a guest
        assert at(order["ordered_at"]) == at("2017-03-22T19:28:02+00:00")
        assert at(order["updated_at"]) == at(updated_at)
        assert [(e["topic"], e["state"]) for e in inbound_events(api, program["id"])] == [
            (topic, "processed")
        ]


BATCH_EXPECTED: dict[int, tuple[Any, ...]] = {
    # id: (topic, status, amount, total, tax, shipping, refunded, customer, items)
    728: ("order.created", "pending", "30.00", "62.25", "2.25", "30.00", "0.00", JOHN, 3),
    729: ("order.created", "paid", "32.00", "54.40", "2.40", "20.00", "0.00", JOHN, 2),
    727: ("order.updated", "paid", "18.00", "29.35", "1.35", "10.00", "0.00", JOHN, 2),
    # The order body the batch's delete answered: its refunds 726 (-10.00) and 724 (-9.00).
    723: (
        "order.updated",
        "paid",
        "29.00",
        "39.00",
        "0.00",
        "10.00",
        "19.00",
        {"external_id": "26", "email": "joao.silva@example.com", "name": "João Silva"},
        2,
    ),
}


def test_every_order_of_the_batch_response_becomes_an_order(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        batch = fixture_json(VENDOR, BATCH)
        bodies = [*batch["create"], *batch["update"], *batch["delete"]]
        assert sorted(o["id"] for o in bodies) == sorted(BATCH_EXPECTED)

        for body in bodies:
            deliver(api, connector, BATCH_EXPECTED[body["id"]][0], encode(body))
        drain(server.runtime)

        for body in bodies:
            _, status, amount, total, tax, shipping, refunded, customer, lines = BATCH_EXPECTED[
                body["id"]
            ]
            order = the_order(api, program["id"], body["id"])
            assert (
                order["number"],
                order["status"],
                order["amount"],
                order["total"],
                order["tax"],
                order["shipping"],
                order["refunded_amount"],
                order["currency"],
            ) == (str(body["id"]), status, amount, total, tax, shipping, refunded, "USD")
            assert {k: order["customer"][k] for k in customer} == customer
            assert [(i["id"], i["quantity"], i["total"]) for i in order["items"]] == [
                (str(line["id"]), line["quantity"], line["total"]) for line in body["line_items"]
            ]
            assert len(order["items"]) == lines
            assert at(order["ordered_at"]) == at(body["date_created_gmt"] + "+00:00")
            assert at(order["updated_at"]) == at(body["date_modified_gmt"] + "+00:00")
        assert {e["state"] for e in inbound_events(api, program["id"])} == {"processed"}


def test_customer_fixture_becomes_the_orders_customer(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        deliver(api, connector, "customer.created", fixture_bytes(VENDOR, CUSTOMER))
        drain(server.runtime)
        # An order of customer 25 whose billing says nothing: the customer record speaks.
        order = fixture_json(VENDOR, CREATE)
        order.update(id=5025, customer_id=25)
        order["billing"].update(first_name="", last_name="", email="")
        deliver(api, connector, "order.created", encode(order))
        drain(server.runtime)

        customer = the_order(api, program["id"], 5025)["customer"]
        assert (customer["external_id"], customer["email"], customer["name"]) == (
            "25",
            "john.doe@example.com",
            "John Doe",
        )
        assert [(e["topic"], e["state"]) for e in inbound_events(api, program["id"])] == [
            ("customer.created", "processed"),
            ("order.created", "processed"),
        ]


# --- signatures and the ping ---------------------------------------------------------------


def test_bad_signatures_are_401_and_the_ping_200_nothing_stored(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        body = fixture_bytes(VENDOR, CREATE)
        path = hook_path(connector)
        wrong_key = wc_headers("order.created", body, key=b"woo&amp;secret")  # not decoded
        missing = wc_headers("order.created", body)
        del missing["X-WC-Webhook-Signature"]
        tampered = wc_headers("order.created", body)

        answers = [
            api.post(path, content=body, headers=wrong_key),
            api.post(path, content=body, headers=missing),
            api.post(path, content=body.replace(b"29.35", b"99.35"), headers=tampered),
            api.post(path, data={"webhook_id": "31"}, headers={"X-WC-Webhook-ID": "31"}),
        ]
        ping = api.post(path, data={"webhook_id": "31"})

        assert [a.status_code for a in answers] == [401, 401, 401, 401]
        assert {a.json()["code"] for a in answers} == {"invalid_signature"}
        assert (ping.status_code, ping.text) == (200, "ok")
        drain(server.runtime)
        assert inbound_events(api, program["id"]) == []
        assert orders_for(api, program["id"]) == []


# --- refunds ---------------------------------------------------------------------------------


def attributed_order(api: httpx.Client, program_id: str, order_id: int) -> dict[str, Any]:
    affiliate = create_affiliate_api(api, program_id)
    link = create_link_api(api, program_id, affiliate["id"])
    click_id = click(api, link["code"])
    order = fixture_json(VENDOR, CREATE)
    now = datetime.now(UTC)
    order.update(
        id=order_id,
        number=str(order_id),
        date_created_gmt=gmt(now),
        date_modified_gmt=gmt(now),
    )
    order["meta_data"].append({"id": 13200, "key": "plclid", "value": click_id})
    return dict(order)


def later(order: dict[str, Any], seconds: int, **changes: Any) -> dict[str, Any]:
    newer = copy.deepcopy(order)
    modified = datetime.fromisoformat(order["date_modified_gmt"]) + timedelta(seconds=seconds)
    newer.update(date_modified_gmt=gmt(modified.replace(tzinfo=UTC)), **changes)
    return newer


def test_refunds_inside_order_updated(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        order = attributed_order(api, program["id"], 6001)
        first = later(order, 60, refunds=[{"id": 901, "reason": "", "total": "-5.00"}])
        second = later(
            order,
            120,
            status="refunded",
            refunds=[
                {"id": 902, "reason": "", "total": "-4.50"},
                {"id": 901, "reason": "", "total": "-5.00"},
            ],
        )

        deliver(api, connector, "order.created", encode(order))
        drain(server.runtime)
        placed = the_order(api, program["id"], 6001)
        assert (placed["amount"], placed["attribution"]) == ("18.00", "click")
        assert commissions(api, program["id"], "6001") == ["1.80"]  # 10 % of 18.00

        deliver(api, connector, "order.updated", encode(first))
        drain(server.runtime)
        assert the_order(api, program["id"], 6001)["refunded_amount"] == "5.00"
        assert commissions(api, program["id"], "6001") == ["1.30"]

        deliver(api, connector, "order.updated", encode(second))
        deliver(api, connector, "order.updated", encode(first))  # late: changes nothing
        drain(server.runtime)
        final = the_order(api, program["id"], 6001)
        assert (final["status"], final["refunded_amount"]) == ("paid", "9.50")
        assert commissions(api, program["id"], "6001") == ["0.85"]  # 10 % of 8.50

        # A full refund larger than the commission base (shipping too) is capped.
        full = later(
            order,
            180,
            status="refunded",
            refunds=[{"id": 903, "reason": "", "total": "-19.85"}, *second["refunds"]],
        )
        deliver(api, connector, "order.updated", encode(full))
        drain(server.runtime)
        assert the_order(api, program["id"], 6001)["refunded_amount"] == "18.00"
        assert commissions(api, program["id"], "6001") == ["0.00"]


def test_a_deleted_order_has_its_commission_reversed(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        order = attributed_order(api, program["id"], 6101)
        deliver(api, connector, "order.created", encode(order))
        drain(server.runtime)
        assert commissions(api, program["id"], "6101") == ["1.80"]

        deliver(api, connector, "order.deleted", b'{"id":6101}')
        deliver(api, connector, "order.deleted", b'{"id":999999}')  # never recorded
        drain(server.runtime)

        assert the_order(api, program["id"], 6101)["status"] == "cancelled"
        assert commissions(api, program["id"], "6101") == ["0.00"]
        assert {e["state"] for e in inbound_events(api, program["id"])} == {"processed"}
        assert len(orders_for(api, program["id"])) == 1


# --- duplicates and order of arrival --------------------------------------------------------


def test_duplicates_and_out_of_order_deliveries(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        order = attributed_order(api, program["id"], 7001)
        body = encode(order)

        answers = [deliver(api, connector, "order.created", body).json() for _ in range(3)]
        # The same state as order.updated too (the payload is built at delivery time).
        same_state = deliver(api, connector, "order.updated", body).json()
        drain(server.runtime)

        assert [a["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
        assert same_state["status"] == "duplicate"
        assert len({a["event_id"] for a in answers}) == 1
        assert len(orders_for(api, program["id"], external_id="7001")) == 1
        assert commissions(api, program["id"], "7001") == ["1.80"]

        # Cancelled, then an older processing state arrives: it stays cancelled.
        deliver(api, connector, "order.updated", encode(later(order, 60, status="cancelled")))
        deliver(api, connector, "order.updated", encode(later(order, 30, status="processing")))
        drain(server.runtime)
        cancelled = the_order(api, program["id"], 7001)
        assert cancelled["status"] == "cancelled"
        assert at(cancelled["updated_at"]) == at(order["date_modified_gmt"] + "+00:00") + (
            timedelta(seconds=60)
        )
        assert commissions(api, program["id"], "7001") == ["0.00"]

        # A failed payment paid later from "My account": the commission is earned.
        retried = attributed_order(api, program["id"], 7003)
        retried["status"] = "failed"
        deliver(api, connector, "order.created", encode(retried))
        drain(server.runtime)
        assert the_order(api, program["id"], 7003)["status"] == "pending"
        assert commissions(api, program["id"], "7003") == []
        deliver(api, connector, "order.updated", encode(later(retried, 60, status="processing")))
        drain(server.runtime)
        assert the_order(api, program["id"], 7003)["status"] == "paid"
        assert commissions(api, program["id"], "7003") == ["1.80"]

        # updated (completed, newer) before created (pending, older): ends completed.
        pending = {**fixture_json(VENDOR, CREATE), "id": 7002, "status": "pending"}
        completed = later(pending, 90, status="completed", total="35.35", shipping_total="16.00")
        deliver(api, connector, "order.updated", encode(completed))
        deliver(api, connector, "order.created", encode(pending))
        drain(server.runtime)
        final = the_order(api, program["id"], 7002)
        assert (final["status"], final["total"], final["amount"]) == ("paid", "35.35", "18.00")
        assert at(final["updated_at"]) == at("2017-03-22T19:29:38+00:00")


# --- payloads we cannot use -------------------------------------------------------------------


def test_unusable_payloads_are_rejected_and_replayable(server: Server) -> None:
    with server.client() as api:
        program, connector = setup_shop(api)
        order = fixture_json(VENDOR, CREATE)
        no_total = {k: v for k, v in order.items() if k != "total"} | {"id": 8001}
        odd_currency = {**order, "id": 8002, "currency": "XYZ"}
        bodies = [
            ("order.created", encode(no_total)),
            ("order.created", encode(odd_currency)),
            ("order.updated", b'{"id": 8003, "total": "1.00",'),
            ("product.created", encode({"id": 8004})),
            ("order.deleted", b'{"id":727}'),
        ]

        for topic, body in bodies:
            deliver(api, connector, topic, body)
        drain(server.runtime)

        events = {
            e["topic"] + ":" + e["external_id"]: e for e in inbound_events(api, program["id"])
        }
        states = sorted((e["state"], e["last_error"] or "") for e in events.values())
        assert [s for s, _ in states] == ["processed", *["rejected"] * 4]
        errors = " | ".join(error for _, error in states)
        assert "order 8001's total is missing" in errors
        assert "unknown currency 'XYZ'" in errors
        assert "malformed JSON" in errors
        assert "unknown topic 'product.created'" in errors
        assert orders_for(api, program["id"]) == []

        rejected = next(e for e in events.values() if "malformed" in (e["last_error"] or ""))
        assert rejected["external_id"].startswith("sha256:")
        replayed = api.post(f"/api/v1/inbound-events/{rejected['id']}/replay")
        assert replayed.status_code == 200, replayed.text
        assert (replayed.json()["state"], replayed.json()["attempts"]) == ("pending", 0)
        drain(server.runtime)
        again = api.get(f"/api/v1/inbound-events/{rejected['id']}").json()
        assert (again["state"], again["attempts"]) == ("rejected", 1)


# --- backfill -----------------------------------------------------------------------------------


def list_page(orders: list[dict[str, Any]], total: int, pages: int) -> Reply:
    return Reply(
        headers={
            "Content-Type": "application/json",
            "X-WP-Total": str(total),
            "X-WP-TotalPages": str(pages),
        },
        body=encode(orders),
    )


def shop_orders(first_id: int, count: int) -> list[dict[str, Any]]:
    batch = fixture_json(VENDOR, BATCH)
    templates = [*batch["create"], *batch["update"], *batch["delete"]]
    made = []
    for index in range(count):
        order = copy.deepcopy(templates[index % len(templates)])
        order.update(id=first_id + index, number=str(first_id + index))
        made.append(order)
    return made


def backfill_connector(
    api: httpx.Client, shop: ScriptedServer
) -> tuple[dict[str, Any], dict[str, Any]]:
    return setup_shop(api, api_base_url=shop.url)


SINCE = datetime(2017, 1, 1, tzinfo=UTC)


def test_backfill_pages_through_orders_once(server: Server) -> None:
    orders = shop_orders(9001, 5)
    shop = ScriptedServer(
        [
            list_page(orders[0:2], 5, 3),
            list_page(orders[2:4], 5, 3),
            list_page(orders[4:5], 5, 3),
        ]
    )
    with server.client() as api, shop.running():
        program, connector = backfill_connector(api, shop)
        deliver(api, connector, "order.updated", encode(orders[1]))  # also seen by webhook

        result = run_backfill(server, connector["id"], SINCE)
        drain(server.runtime)

        assert (result.pages, result.stored, result.duplicates) == (3, 4, 1)
        assert [r.path.split("?")[0] for r in shop.received] == ["/wp-json/wc/v3/orders"] * 3
        assert [r.path.split("?")[1] for r in shop.received] == [
            "modified_after=2017-01-01T00%3A00%3A00&dates_are_gmt=true&orderby=modified"
            f"&order=asc&per_page=100&page={page}"
            for page in (1, 2, 3)
        ]
        expected_auth = "Basic " + base64.b64encode(b"ck_test:cs_test").decode()
        assert {r.headers["authorization"] for r in shop.received} == {expected_auth}
        listed = orders_for(api, program["id"])
        assert sorted(o["external_id"] for o in listed) == [str(o["id"]) for o in orders]
        assert {o["source"] for o in listed} == {"woocommerce"}
        refunded = the_order(api, program["id"], 9004)  # made from order 723
        assert (refunded["amount"], refunded["refunded_amount"]) == ("29.00", "19.00")


def test_an_interrupted_backfill_resumes_at_its_page(server: Server) -> None:
    orders = shop_orders(9101, 5)
    shop = ScriptedServer(
        [
            list_page(orders[0:2], 5, 3),
            Reply(status=404, body=b'{"code":"rest_no_route"}'),
            list_page(orders[2:4], 5, 3),
            list_page(orders[4:5], 5, 3),
        ]
    )
    with server.client() as api, shop.running():
        program, connector = backfill_connector(api, shop)

        with pytest.raises(httpx.HTTPStatusError):
            run_backfill(server, connector["id"], SINCE)
        resumed = run_backfill(server, connector["id"], SINCE)
        drain(server.runtime)

        pages = [r.path.rsplit("page=", 1)[1] for r in shop.received]
        assert pages == ["1", "2", "2", "3"]
        assert (resumed.resumed, resumed.pages, resumed.stored, resumed.duplicates) == (
            True,
            2,
            3,
            0,
        )
        listed = orders_for(api, program["id"])
        assert sorted(o["external_id"] for o in listed) == [str(o["id"]) for o in orders]


def test_backfill_without_credentials_is_refused(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, currency="USD")
        connector = create_connector_api(
            api,
            program["id"],
            "woocommerce",
            secret=SECRET,
            settings={"store_url": "https://example.com"},
        )
        with pytest.raises(Exception, match="consumer_key"):
            run_backfill(server, connector["id"], SINCE)


def test_a_guest_who_then_opens_an_account(server: Server) -> None:
    # The guest's record (found by e-mail) becomes the account's: one customer.
    with server.client() as api:
        program, connector = setup_shop(api)
        deliver(api, connector, "order.created", fixture_bytes(VENDOR, CREATE))  # guest
        drain(server.runtime)
        deliver(api, connector, "customer.created", fixture_bytes(VENDOR, CUSTOMER))
        second = {**fixture_json(VENDOR, CREATE), "id": 5026, "customer_id": 25}
        deliver(api, connector, "order.created", encode(second))
        drain(server.runtime)

        assert {e["state"] for e in inbound_events(api, program["id"])} == {"processed"}
        guest_order = the_order(api, program["id"], 727)
        account_order = the_order(api, program["id"], 5026)
        assert account_order["customer"]["external_id"] == "25"
        assert guest_order["customer"]["id"] == account_order["customer"]["id"]
