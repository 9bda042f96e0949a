"""Magento 2 / Adobe Commerce through real HTTP: Adobe I/O Events envelopes on the
webhook, the REST order list for backfill, on both database backends."""

from __future__ import annotations

import base64
import copy
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from partnerloop.core.errors import InvalidInput
from partnerloop.integrations.magento import connector as magento
from partnerloop.integrations.shop import PulledPage
from tests.conftest import Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.connectors import (
    create_connector_api,
    fixture_bytes,
    hook_path,
    inbound_events,
    orders_for,
    run_backfill,
)
from tests.factories.magento import VENDOR, fixture_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.http import Reply, ScriptedServer

CLIENT_ID = "ca7b36f23be94dcb9d2ebb97f0276e3f"
ORDER_TYPE = "com.adobe.commerce.observer.sales_order_save_commit_after"
MEMO_TYPE = "com.adobe.commerce.observer.sales_order_creditmemo_save_after"


def envelope(value: Mapping[str, Any], *, kind: str = ORDER_TYPE, **overrides: Any) -> bytes:
    """An I/O Events CloudEvent like io-events_cloudevent_*.json around `value`."""
    event_id = overrides.pop("event_id", secrets.token_hex(16))
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": secrets.token_hex(16),
        "source": "urn:uuid:fb58963f-d2e7-4ab4-83da-b6ff15b8ebc0",
        "type": kind,
        "datacontenttype": "application/json",
        "time": "2025-07-17T15:48:42.436Z",
        "event_id": event_id,
        "recipient_client_id": CLIENT_ID,
        "data": {
            "key": secrets.token_hex(8),
            "value": value,
            "source": "shop.Stage",
            "_metadata": {"commerceEdition": "Adobe Commerce", "storeId": "1"},
        },
    }
    body.update(overrides)
    return json.dumps(body).encode()


def sign(secret: str, body: bytes) -> dict[str, str]:
    return {
        "x-adobe-signature": magento.signature_of(secret, body),
        "content-type": "application/json",
    }


def setup(
    api: httpx.Client, *, settings: dict[str, Any] | None = None, **connector: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    program = create_program_api(api, currency="USD")
    secret = secrets.token_hex(16)
    created = create_connector_api(
        api,
        program["id"],
        "magento",
        secret=secret,
        settings={"base_url": "https://shop.example.com", **(settings or {})},
        **connector,
    )
    return program, created, secret


def post(api: httpx.Client, connector: dict[str, Any], secret: str, body: bytes) -> httpx.Response:
    response = api.post(hook_path(connector), content=body, headers=sign(secret, body))
    assert response.status_code == 200, response.text
    return response


def magento_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def attributed_order(api: httpx.Client, program_id: str, **changes: Any) -> dict[str, Any]:
    """A paid copy of the fixture order that carries a real click id, placed now."""
    affiliate = create_affiliate_api(api, program_id)
    link = create_link_api(api, program_id, affiliate["id"])
    click_id = click(api, link["code"])
    order = copy.deepcopy(fixture_order())
    now = datetime.now(UTC)
    order["created_at"] = magento_time(now)
    order["updated_at"] = magento_time(now)
    order["state"], order["status"] = "processing", "processing"
    order["extension_attributes"]["plclid"] = click_id
    order.update(changes)
    return order


def commission_amounts(api: httpx.Client, program_id: str) -> list[str]:
    """The commission amounts of the program's one conversion."""
    response = api.get("/api/v1/conversions", params={"program_id": program_id})
    [conversion] = response.json()["items"]
    return [c["amount"] for c in conversion["commissions"]]


def credit_memo(entity_id: int, order_id: int, **changes: Any) -> dict[str, Any]:
    memo: dict[str, Any] = {
        "entity_id": entity_id,
        "order_id": order_id,
        "increment_id": f"10000000{entity_id}",
        "state": 2,
        "order_currency_code": "USD",
        "base_currency_code": "USD",
        "subtotal": 22,
        "discount_amount": 0,
        "tax_amount": 0,
        "shipping_amount": 5,
        "adjustment_positive": 0,
        "adjustment_negative": 0,
        "grand_total": 27,
        "created_at": "2017-08-22 10:00:00",
        "items": [{"entity_id": 1, "order_item_id": 3, "qty": 1, "row_total": 22}],
    }
    memo.update(changes)
    return memo


# --- the order of the docs through the webhook ---------------------------------------------


def test_fixture_order_event_becomes_the_order_of_the_file(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        body = envelope(fixture_order())

        first = post(api, connector, secret, body)
        drain(server.runtime)

        assert first.json()["status"] == "accepted"
        [event] = inbound_events(api, program["id"])
        assert (event["topic"], event["state"]) == (
            "observer.sales_order_save_commit_after",
            "processed",
        )
        [order] = orders_for(api, program["id"], external_id="3")
        assert {
            key: order[key]
            for key in (
                "external_id",
                "number",
                "source",
                "status",
                "amount",
                "total",
                "tax",
                "shipping",
                "discount",
                "currency",
                "refunded_amount",
            )
        } == {
            "external_id": "3",  # entity_id
            "number": "000000003",  # increment_id
            "source": "magento",
            "status": "pending",  # state "new"
            "amount": "160.00",  # subtotal 160 + discount_amount 0
            "total": "165.00",  # grand_total
            "tax": "0.00",
            "shipping": "5.00",
            "discount": "0.00",
            "currency": "USD",
            "refunded_amount": "0.00",
        }
        assert order["items"] == [
            {
                "id": "3",
                "sku": "WS12-M-Orange",
                "name": "Radiant Tee-M-Orange",
                "quantity": 1,
                "unit_price": "22.00",
                "total": "22.00",
            }
        ]
        assert order["ordered_at"].startswith("2017-08-21T22:22:19")
        assert order["updated_at"].startswith("2017-08-21T22:22:20")
        customer = order["customer"]
        assert (customer["external_id"], customer["email"], customer["name"]) == (
            "3",
            "jdoe@example.com",
            "Jane Doe",
        )
        assert (order["affiliate_id"], order["attribution"]) == (None, "none")


def test_configurable_children_guests_and_four_decimal_amounts(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        order = fixture_order()
        parent = {
            **order["items"][0],
            "item_id": 10,
            "sku": "MH01",
            "name": "Chaz Kangeroo Hoodie",
            "product_type": "configurable",
            "price": 36.3899,
            "row_total": 72.7798,
            "discount_amount": 7.2779,
            "qty_ordered": 2,
        }
        child = {
            **parent,
            "item_id": 11,
            "sku": "MH01-XS-Black",
            "product_type": "simple",
            "price": 0,
            "row_total": 0,
            "discount_amount": 0,
            "parent_item_id": 10,
            "parent_item": {"item_id": 10},
        }
        order.update(
            entity_id=41,
            increment_id="000000041",
            items=[parent, child],
            subtotal="72.7798",  # event payloads carry Magento's decimals as text
            discount_amount="-7.2779",
            tax_amount="5.4005",  # half-even: 540.05 -> 540
            shipping_amount=10,
            grand_total="80.9024",
            coupon_code="SPRING10",
            customer_id=None,
            customer_is_guest=1,
        )

        post(api, connector, secret, envelope(order))
        drain(server.runtime)

        [stored] = orders_for(api, program["id"], external_id="41")
        assert (
            stored["amount"],
            stored["total"],
            stored["tax"],
            stored["discount"],
            stored["coupon"],
        ) == ("65.50", "80.90", "5.40", "7.28", "SPRING10")
        assert [
            (i["sku"], i["quantity"], i["unit_price"], i["total"]) for i in stored["items"]
        ] == [("MH01", 2, "36.39", "65.50")]
        customer = stored["customer"]
        assert (customer["external_id"], customer["email"]) == (None, "jdoe@example.com")


def test_same_event_three_times_is_one_order_and_older_state_changes_nothing(
    server: Server,
) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        newer = fixture_order()
        newer.update(state="processing", status="processing", updated_at="2017-08-22 09:00:00")
        body = envelope(newer)
        answers = [post(api, connector, secret, body).json()["status"] for _ in range(3)]
        older = fixture_order()  # state new, updated 2017-08-21 22:22:20, other totals
        older.update(subtotal=100, grand_total=105)
        post(api, connector, secret, envelope(older))
        drain(server.runtime)

        assert answers == ["accepted", "duplicate", "duplicate"]
        assert len(inbound_events(api, program["id"])) == 2
        [order] = orders_for(api, program["id"])
        assert (order["status"], order["amount"], order["total"]) == ("paid", "160.00", "165.00")
        assert order["updated_at"].startswith("2017-08-22T09:00:00")


# --- credit memos ----------------------------------------------------------------------------


def test_credit_memo_reduces_the_commission(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        order = attributed_order(api, program["id"])
        post(api, connector, secret, envelope(order))
        drain(server.runtime)
        [before] = orders_for(api, program["id"], external_id="3")
        assert (before["status"], before["attribution"]) == ("paid", "click")
        assert commission_amounts(api, program["id"]) == ["16.00"]

        memo = envelope(credit_memo(7, 3), kind=MEMO_TYPE)
        post(api, connector, secret, memo)
        post(api, connector, secret, memo)  # Adobe's retry: same event_id
        drain(server.runtime)

        [after] = orders_for(api, program["id"], external_id="3")
        assert after["refunded_amount"] == "22.00"  # subtotal 22, not the 27 with shipping
        assert commission_amounts(api, program["id"]) == ["13.80"]


def test_credit_memo_before_its_order_is_applied_when_the_order_arrives(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        order = attributed_order(api, program["id"], entity_id=9, increment_id="000000009")

        post(api, connector, secret, envelope(credit_memo(12, 9, subtotal=30), kind=MEMO_TYPE))
        drain(server.runtime)
        assert orders_for(api, program["id"]) == []
        post(api, connector, secret, envelope(order))
        drain(server.runtime)

        [stored] = orders_for(api, program["id"], external_id="9")
        assert (stored["status"], stored["refunded_amount"]) == ("paid", "30.00")
        assert commission_amounts(api, program["id"]) == ["13.00"]


def test_customer_event_is_recorded(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        value = {
            "id": 3,
            "email": "jdoe@example.com",
            "firstname": "Jane",
            "lastname": "Doe",
            "updated_at": "2017-08-21 22:22:20",
        }
        post(
            api,
            connector,
            secret,
            envelope(value, kind="com.adobe.commerce.observer.customer_save_commit_after"),
        )
        drain(server.runtime)
        [event] = inbound_events(api, program["id"])
        assert (event["topic"], event["state"]) == (
            "observer.customer_save_commit_after",
            "processed",
        )


# --- signatures, challenge, recipient --------------------------------------------------------


def test_challenge_is_answered_and_nothing_stored(server: Server) -> None:
    with server.client() as api:
        program, connector, _ = setup(api)
        answer = api.get(hook_path(connector), params={"challenge": "c-12 3"})
        without = api.get(hook_path(connector))
        assert (answer.status_code, answer.json()) == (200, {"challenge": "c-12 3"})
        assert answer.headers["content-type"].startswith("application/json")
        assert without.status_code == 400
        assert inbound_events(api, program["id"]) == []


def test_bad_signatures_and_foreign_recipient_are_refused(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api, settings={"client_id": CLIENT_ID})
        body = envelope(fixture_order())
        path = hook_path(connector)

        wrong = api.post(path, content=body, headers=sign("not-the-secret", body))
        missing = api.post(path, content=body, headers={"content-type": "application/json"})
        tampered = api.post(path, content=body + b" ", headers=sign(secret, body))
        other = envelope(fixture_order(), recipient_client_id="someone-else")
        foreign = api.post(path, content=other, headers=sign(secret, other))
        good = api.post(path, content=body, headers=sign(secret, body))

        assert [r.status_code for r in (wrong, missing, tampered, foreign)] == [401] * 4
        assert {r.json()["code"] for r in (wrong, missing, tampered, foreign)} == {
            "invalid_signature"
        }
        assert good.status_code == 200
        assert len(inbound_events(api, program["id"])) == 1


def test_rsa_digital_signature_with_the_configured_public_key(server: Server) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with server.client() as api:
        program, connector, _ = setup(api, settings={"public_key": pem})
        body = envelope(fixture_order())
        signature = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
        path = hook_path(connector)

        accepted = api.post(
            path,
            content=body,
            headers={
                "x-adobe-digital-signature-1": base64.b64encode(b"stale key").decode(),
                "x-adobe-digital-signature-2": signature,
                "x-adobe-public-key1-path": "/prod/keys/pub-key-old.pem",
                "x-adobe-public-key2-path": "/prod/keys/pub-key-new.pem",
            },
        )
        tampered = api.post(
            path,
            content=body.replace(b'"grand_total": 165', b'"grand_total": 1'),
            headers={"x-adobe-digital-signature-1": signature},
        )

        assert accepted.status_code == 200, accepted.text
        assert tampered.status_code == 401
        drain(server.runtime)
        assert len(inbound_events(api, program["id"])) == 1
        assert [o["total"] for o in orders_for(api, program["id"])] == ["165.00"]


# --- quarantine --------------------------------------------------------------------------------


def test_unusable_events_are_rejected_with_a_reason_and_can_be_replayed(server: Server) -> None:
    with server.client() as api:
        program, connector, secret = setup(api)
        no_total = fixture_order()
        del no_total["grand_total"]
        odd_currency = fixture_order()
        odd_currency["order_currency_code"] = "XYZ"
        product = fixture_bytes(
            VENDOR, "io-events_cloudevent_catalog_product_save_commit_after.json"
        )
        bodies = {
            "grand_total": envelope(no_total),
            "currency": envelope(odd_currency),
            "json": b'{"specversion": "1.0", "type": ',
            "topic": product,
        }
        ids = {
            name: post(api, connector, secret, body).json()["event_id"]
            for name, body in bodies.items()
        }
        drain(server.runtime)

        events = {e["id"]: e for e in inbound_events(api, program["id"])}
        reasons = {name: events[event_id]["last_error"] or "" for name, event_id in ids.items()}
        assert {events[event_id]["state"] for event_id in ids.values()} == {"rejected"}
        assert "no grand_total" in reasons["grand_total"]
        assert "unknown currency 'XYZ'" in reasons["currency"]
        assert "malformed JSON" in reasons["json"]
        assert events[ids["json"]]["topic"] == "unknown"
        assert "unknown topic 'observer.catalog_product_save_commit_after'" in reasons["topic"]
        assert orders_for(api, program["id"]) == []

        replayed = api.post(f"/api/v1/inbound-events/{ids['grand_total']}/replay")
        assert (replayed.status_code, replayed.json()["state"], replayed.json()["attempts"]) == (
            200,
            "pending",
            0,
        )


# --- pull ------------------------------------------------------------------------------------


def _orders_page(orders: list[dict[str, Any]], total: int, page: int) -> Reply:
    body = {
        "items": orders,
        "search_criteria": {
            "filter_groups": [
                {
                    "filters": [
                        {
                            "field": "updated_at",
                            "value": "2017-01-01 00:00:00",
                            "condition_type": "gteq",
                        }
                    ]
                }
            ],
            "page_size": magento.PAGE_SIZE,
            "current_page": page,
        },
        "total_count": total,
    }
    return Reply(200, {"content-type": "application/json"}, json.dumps(body).encode())


def _query(path: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(path).query).items()}


def test_pull_over_three_pages_interrupted_and_resumed(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(magento, "PAGE_SIZE", 2)
    base = fixture_order()
    orders = [base]
    for entity_id in (4, 5, 6, 7):
        order = copy.deepcopy(base)
        order.update(
            entity_id=entity_id,
            increment_id=f"00000000{entity_id}",
            updated_at=f"2017-08-2{entity_id - 2} 10:00:00",
        )
        orders.append(order)
    pages = [orders[0:2], orders[2:4], orders[4:5]]
    since = datetime(2017, 1, 1, tzinfo=UTC)
    shop = ScriptedServer(
        [
            _orders_page(pages[0], 5, 1),
            Reply(404, {}, b'{"message":"gone"}'),
            _orders_page(pages[1], 5, 2),
            _orders_page(pages[2], 5, 3),
        ]
    )
    with server.client() as api, shop.running():
        program, connector, secret = setup(
            api, settings={"api_base_url": shop.url}, credentials={"access_token": "tok-123"}
        )
        # The first order is also seen by webhook: it must count once.
        post(api, connector, secret, envelope(base))

        with pytest.raises(httpx.HTTPStatusError):
            run_backfill(server, connector["id"], since)
        result = run_backfill(server, connector["id"], since)
        drain(server.runtime)

        request = shop.received[0]
        assert request.path.startswith("/rest/V1/orders?")
        assert request.headers["authorization"] == "Bearer tok-123"
        assert _query(request.path) == {
            "searchCriteria[filter_groups][0][filters][0][field]": "updated_at",
            "searchCriteria[filter_groups][0][filters][0][value]": "2017-01-01 00:00:00",
            "searchCriteria[filter_groups][0][filters][0][condition_type]": "gteq",
            "searchCriteria[sortOrders][0][field]": "updated_at",
            "searchCriteria[sortOrders][0][direction]": "ASC",
            "searchCriteria[sortOrders][1][field]": "entity_id",
            "searchCriteria[sortOrders][1][direction]": "ASC",
            "searchCriteria[pageSize]": "2",
            "searchCriteria[currentPage]": "1",
        }
        assert [_query(r.path)["searchCriteria[currentPage]"] for r in shop.received] == [
            "1",
            "2",
            "2",
            "3",
        ]
        assert (result.resumed, result.pages, result.stored, result.duplicates) == (
            True,
            2,
            3,
            0,
        )
        events = inbound_events(api, program["id"])
        assert len(events) == 1 + 5  # the webhook + one per pulled order state
        assert {e["state"] for e in events} == {"processed"}
        stored = orders_for(api, program["id"])
        assert sorted((o["external_id"], o["number"], o["amount"]) for o in stored) == [
            ("3", "000000003", "160.00"),
            ("4", "000000004", "160.00"),
            ("5", "000000005", "160.00"),
            ("6", "000000006", "160.00"),
            ("7", "000000007", "160.00"),
        ]


def test_pull_needs_an_access_token_and_high_water_mark(server: Server) -> None:
    with server.client() as api:
        _, connector, _ = setup(api)
        with pytest.raises(InvalidInput, match="access_token"):
            run_backfill(server, connector["id"], datetime(2017, 1, 1, tzinfo=UTC))

    order = fixture_order()
    later = {**order, "entity_id": 8, "updated_at": "2017-09-01 08:00:00"}
    pages = [
        PulledPage(items=[magento.pulled_item(order)], cursor={"page": 2}),
        PulledPage(items=[magento.pulled_item(later)], cursor={}, done=True),
    ]
    assert magento.high_water_mark(pages) == datetime(2017, 9, 1, 8, 0, tzinfo=UTC)
    assert magento.high_water_mark([]) is None
    assert magento.magento_time(
        datetime(2017, 9, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    ) == ("2017-09-01 10:00:00")
