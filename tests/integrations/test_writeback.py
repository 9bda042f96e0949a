"""Shop write-back: a customer's CRM values written to Shopify (tags), WooCommerce
(customer meta) and Magento (customer attributes), against a local server that
answers with the vendors' published bodies (../shared/fixtures)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from partnerloop.integrations.magento.connector import CONNECTOR as MAGENTO
from partnerloop.integrations.shop import ConnectorConfig
from partnerloop.integrations.shopify.connector import API_VERSION
from partnerloop.integrations.shopify.connector import CONNECTOR as SHOPIFY
from partnerloop.integrations.woocommerce.connector import CONNECTOR as WOOCOMMERCE
from partnerloop.integrations.writeback import WritingShop
from partnerloop.sync.worker import Outcome
from tests.factories.connectors import fixture_json
from tests.support.http import Received, Reply, ScriptedServer

# Each shop connector has the write-back capability (checked by mypy).
WRITERS: tuple[WritingShop, ...] = (SHOPIFY, WOOCOMMERCE, MAGENTO)

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
SHOPIFY_TOKEN = "shpat_test-token"
SHOPIFY_ID = "207119551"  # the fixture customer
SHOPIFY_PATH = f"/admin/api/{API_VERSION}/customers/{SHOPIFY_ID}.json"
WOO_KEY, WOO_SECRET = "ck_test", "cs_test"
WOO_ID = "25"
WOO_PATH = f"/wp-json/wc/v3/customers/{WOO_ID}"
MAGENTO_TOKEN = "magento-integration-token"
MAGENTO_ID = "2"
MAGENTO_PATH = f"/rest/V1/customers/{MAGENTO_ID}"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as http:
        yield http


def config(server: ScriptedServer, credentials: Mapping[str, str]) -> ConnectorConfig:
    return ConnectorConfig(
        connector_id="con_writeback",
        program_currency="EUR",
        settings={"api_base_url": server.url},
        credentials=dict(credentials),
    )


def json_reply(body: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, {"content-type": "application/json", **headers}, json.dumps(body).encode())


def test_every_shop_connector_writes_back() -> None:
    assert [writer.kind for writer in WRITERS] == ["shopify", "woocommerce", "magento"]


# --- Shopify -------------------------------------------------------------------------------


def shopify_customer(tags: str) -> dict[str, Any]:
    """Shopify's REST customer (GET customers/{id}.json answer) with these tags."""
    customer = copy.deepcopy(fixture_json("shopify", "rest-fixture_customer.json"))
    customer["customer"]["tags"] = tags
    return dict(customer)


def write_shopify(
    client: httpx.Client, server: ScriptedServer, values: Mapping[str, str | None]
) -> Outcome:
    return SHOPIFY.write_customer(
        client,
        config=config(server, {"access_token": SHOPIFY_TOKEN}),
        customer_id=SHOPIFY_ID,
        values=values,
        now=NOW,
    )


def shopify_calls(received: list[Received]) -> list[tuple[str, Any]]:
    """(method, body) of each request, after checking Shopify's path and token."""
    calls = []
    for request in received:
        assert request.path == SHOPIFY_PATH
        assert request.headers["x-shopify-access-token"] == SHOPIFY_TOKEN
        calls.append((request.method, request.json() if request.body else None))
    return calls


def put_tags(tags: str) -> tuple[str, Any]:
    return ("PUT", {"customer": {"id": 207119551, "tags": tags}})


def test_shopify_keeps_the_merchants_tags_and_replaces_old_crm_tags(client: httpx.Client) -> None:
    current = "Wholesale, crm:segment:old, CRM:stage:lead, newsletter-2024"
    shopify = ScriptedServer(
        [
            json_reply(shopify_customer(current)),
            json_reply(
                shopify_customer("crm:segment:vip, crm:stage:customer, newsletter-2024, Wholesale")
            ),
        ]
    )
    with shopify.running():
        outcome = write_shopify(client, shopify, {"stage": "customer", "segment": "vip"})

    assert shopify_calls(shopify.received) == [
        ("GET", None),
        put_tags("Wholesale, newsletter-2024, crm:segment:vip, crm:stage:customer"),
    ]
    assert shopify.received[1].headers["content-type"] == "application/json"
    assert (outcome.ok, outcome.status_code, outcome.error) == (True, 200, None)
    assert outcome.response is not None
    assert '"id": 207119551' in outcome.response


def test_shopify_is_not_written_when_the_tags_already_say_it(client: httpx.Client) -> None:
    # Shopify lists tags alphabetically: a different order is the same set.
    shopify = ScriptedServer(
        [json_reply(shopify_customer("crm:tags:newsletter, crm:tags:vip, Wholesale"))]
    )
    with shopify.running():
        outcome = write_shopify(client, shopify, {"tags": "vip;newsletter"})

    assert shopify_calls(shopify.received) == [("GET", None)]
    assert outcome == Outcome(ok=True, status_code=200, response="already up to date")


def test_a_multi_value_becomes_one_shopify_tag_per_item(client: httpx.Client) -> None:
    shopify = ScriptedServer([json_reply(shopify_customer(""))], then=json_reply({}))
    with shopify.running():
        outcome = write_shopify(
            client, shopify, {"tags": "vip;newsletter;; ", "lifecyclestage": "customer"}
        )

    assert shopify_calls(shopify.received)[1] == put_tags(
        "crm:lifecyclestage:customer, crm:tags:vip, crm:tags:newsletter"
    )
    assert outcome.ok


def test_a_cleared_property_loses_its_shopify_tags(client: httpx.Client) -> None:
    current = "crm:segment:vip, crm:stage:lead, Wholesale, crm:tags:a, crm:tags:b"
    shopify = ScriptedServer([json_reply(shopify_customer(current))], then=json_reply({}))
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": None, "stage": "lead", "tags": ""})

    assert shopify_calls(shopify.received)[1] == put_tags("Wholesale, crm:stage:lead")
    assert outcome.ok


@pytest.mark.parametrize(("header", "wait"), [({"Retry-After": "2.0"}, 2.0), ({}, 1.0)])
def test_the_shopify_rate_limit_waits_for_retry_after(
    client: httpx.Client, header: dict[str, str], wait: float
) -> None:
    limited = json_reply(
        {
            "errors": "Exceeded 2 calls per second for api client. Reduce request rates "
            "to resume uninterrupted service."
        },
        429,
        **header,
    )
    shopify = ScriptedServer([limited])
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": "vip"})

    assert len(shopify.received) == 1
    assert (outcome.ok, outcome.permanent, outcome.retry_after) == (False, False, wait)
    assert outcome.status_code == 429
    assert outcome.error is not None
    assert "Exceeded 2 calls per second" in outcome.error


@pytest.mark.parametrize("on", ["GET", "PUT"])
def test_a_customer_deleted_in_shopify_is_permanent(client: httpx.Client, on: str) -> None:
    gone = json_reply({"errors": "Not Found"}, 404)
    replies = [gone] if on == "GET" else [json_reply(shopify_customer("")), gone]
    shopify = ScriptedServer(replies)
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": "vip"})

    assert [method for method, _ in shopify_calls(shopify.received)][-1] == on
    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, 404)
    assert outcome.error is not None
    assert "deleted" in outcome.error


def test_a_shopify_server_error_is_retried(client: httpx.Client) -> None:
    shopify = ScriptedServer([json_reply({"errors": "Internal Server Error"}, 500)])
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": "vip"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, False, 500)
    assert outcome.error == "Shopify answered 500: Internal Server Error"


def test_a_wrong_shopify_token_is_retried_not_dead_lettered(client: httpx.Client) -> None:
    message = "[API] Invalid API key or access token (unrecognized login or wrong password)"
    shopify = ScriptedServer([json_reply({"errors": message}, 401)])
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": "vip"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, False, 401)
    assert outcome.error is not None
    assert message in outcome.error
    assert "access token" in outcome.error


def test_a_refused_shopify_update_is_permanent_with_shopifys_message(
    client: httpx.Client,
) -> None:
    refused = json_reply({"errors": {"tags": ["is invalid"]}}, 422)
    shopify = ScriptedServer([json_reply(shopify_customer("")), refused])
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": "vip"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, 422)
    assert outcome.error == "Shopify answered 422: tags: is invalid"
    # The customer's personal data stays out of the error text.
    assert "bob.norman" not in (outcome.error or "")


@pytest.mark.parametrize(
    ("value", "named"),
    [("x" * 250, "is 262 characters long"), ("Smith, Jones", "contains a comma")],
)
def test_a_value_shopify_cannot_hold_is_refused_before_any_request(
    client: httpx.Client, value: str, named: str
) -> None:
    shopify = ScriptedServer([])
    with shopify.running():
        outcome = write_shopify(client, shopify, {"segment": value})

    assert shopify.received == []
    assert (outcome.ok, outcome.permanent) == (False, True)
    assert outcome.error is not None
    assert f"crm:segment:{value[:20]}" in outcome.error
    assert named in outcome.error


def test_a_shopify_that_does_not_answer_in_time_is_retried() -> None:
    shopify = ScriptedServer([Reply(delay=1.0)])
    with shopify.running(), httpx.Client(timeout=0.2) as slow:
        outcome = write_shopify(slow, shopify, {"segment": "vip"})

    assert outcome == Outcome(ok=False, error="Shopify did not answer in time")


def test_a_shopify_connector_without_a_token_is_retried_without_a_request(
    client: httpx.Client,
) -> None:
    shopify = ScriptedServer([])
    with shopify.running():
        outcome = SHOPIFY.write_customer(
            client, config=config(shopify, {}), customer_id=SHOPIFY_ID, values={}, now=NOW
        )

    assert shopify.received == []
    assert (outcome.ok, outcome.permanent) == (False, False)
    assert "credentials.access_token" in (outcome.error or "")


# --- WooCommerce ---------------------------------------------------------------------------


def woo_customer(meta: list[dict[str, Any]]) -> dict[str, Any]:
    """WooCommerce's REST v3 customer (what a PUT answers) with this meta_data."""
    customer = copy.deepcopy(fixture_json("woocommerce", "rest-v3_customer_create-response.json"))
    customer["meta_data"] = meta
    return dict(customer)


def write_woo(
    client: httpx.Client, server: ScriptedServer, customer_id: str, values: Mapping[str, Any]
) -> Outcome:
    return WOOCOMMERCE.write_customer(
        client,
        config=config(server, {"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET}),
        customer_id=customer_id,
        values=values,
        now=NOW,
    )


def test_woocommerce_gets_crm_meta_sorted_by_key(client: httpx.Client) -> None:
    written = [
        {"id": 901, "key": "crm_interests", "value": "vip;newsletter"},
        {"id": 902, "key": "crm_segment", "value": ""},
        {"id": 903, "key": "crm_stage", "value": "customer"},
    ]
    woo = ScriptedServer([json_reply(woo_customer(written))])
    with woo.running():
        outcome = write_woo(
            client,
            woo,
            WOO_ID,
            {"stage": "customer", "segment": None, "interests": "vip;newsletter"},
        )

    [request] = woo.received
    assert (request.method, request.path) == ("PUT", WOO_PATH)
    basic = base64.b64encode(f"{WOO_KEY}:{WOO_SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "meta_data": [
            {"key": "crm_interests", "value": "vip;newsletter"},
            {"key": "crm_segment", "value": ""},
            {"key": "crm_stage", "value": "customer"},
        ]
    }
    assert (outcome.ok, outcome.status_code, outcome.error) == (True, 200, None)


@pytest.mark.parametrize("guest", ["0", ""])
def test_a_woocommerce_guest_has_no_account_to_write_to(client: httpx.Client, guest: str) -> None:
    woo = ScriptedServer([])
    with woo.running():
        outcome = write_woo(client, woo, guest, {"stage": "customer"})

    assert woo.received == []
    assert outcome.ok
    assert "no customer account" in (outcome.response or "")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # What the customers controller answers for an id that names no user.
        (
            400,
            {
                "code": "woocommerce_rest_invalid_id",
                "message": "Invalid resource ID.",
                "data": {"status": 400},
            },
        ),
        (404, {"code": "rest_no_route", "message": "No route was found.", "data": {"status": 404}}),
    ],
)
def test_a_customer_deleted_in_woocommerce_is_permanent(
    client: httpx.Client, status: int, body: dict[str, Any]
) -> None:
    woo = ScriptedServer([json_reply(body, status)])
    with woo.running():
        outcome = write_woo(client, woo, WOO_ID, {"stage": "customer"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, status)
    assert outcome.error == (
        f"the customer no longer exists in WooCommerce (deleted there): "
        f"{body['message']} ({body['code']})"
    )


def test_wrong_woocommerce_keys_are_retried(client: httpx.Client) -> None:
    refused = {
        "code": "woocommerce_rest_cannot_edit",
        "message": "Sorry, you are not allowed to edit this resource.",
        "data": {"status": 401},
    }
    woo = ScriptedServer([json_reply(refused, 401)])
    with woo.running():
        outcome = write_woo(client, woo, WOO_ID, {"stage": "customer"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, False, 401)
    assert "Sorry, you are not allowed to edit this resource." in (outcome.error or "")


def test_a_woocommerce_answer_that_is_not_the_api_is_not_success(client: httpx.Client) -> None:
    page = Reply(200, {"content-type": "text/html"}, b"<html>Welcome to my shop</html>")
    woo = ScriptedServer([page])
    with woo.running():
        outcome = write_woo(client, woo, WOO_ID, {"stage": "customer"})

    assert (outcome.ok, outcome.permanent) == (False, False)
    assert "store_url" in (outcome.error or "")


# --- Magento -------------------------------------------------------------------------------


def magento_customer(attributes: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Magento's REST customer (fixture) with these custom_attributes."""
    customer = copy.deepcopy(fixture_json("magento2", "rest_POST-V1-customers_response.json"))
    if attributes is not None:
        customer["custom_attributes"] = attributes
    return dict(customer)


def write_magento(
    client: httpx.Client, server: ScriptedServer, values: Mapping[str, str | None]
) -> Outcome:
    return MAGENTO.write_customer(
        client,
        config=config(server, {"access_token": MAGENTO_TOKEN}),
        customer_id=MAGENTO_ID,
        values=values,
        now=NOW,
    )


def magento_calls(received: list[Received]) -> list[tuple[str, Any]]:
    calls = []
    for request in received:
        assert request.path == MAGENTO_PATH
        assert request.headers["authorization"] == f"Bearer {MAGENTO_TOKEN}"
        calls.append((request.method, request.json() if request.body else None))
    return calls


def test_magento_gets_the_whole_customer_back_with_crm_attributes_set(
    client: httpx.Client,
) -> None:
    read = magento_customer(
        [
            {"attribute_code": "loyalty_tier", "value": "gold"},
            {"attribute_code": "crm_stage", "value": "lead"},
        ]
    )
    expected = magento_customer(
        [
            {"attribute_code": "loyalty_tier", "value": "gold"},
            {"attribute_code": "crm_stage", "value": "customer"},
            {"attribute_code": "crm_notes", "value": ""},
            {"attribute_code": "crm_segment", "value": "vip"},
        ]
    )
    # Magento answers with the saved customer; an empty attribute is left out.
    saved = magento_customer(
        [
            {"attribute_code": "loyalty_tier", "value": "gold"},
            {"attribute_code": "crm_stage", "value": "customer"},
            {"attribute_code": "crm_segment", "value": "vip"},
        ]
    )
    magento = ScriptedServer([json_reply(read), json_reply(saved)])
    with magento.running():
        outcome = write_magento(
            client, magento, {"stage": "customer", "segment": "vip", "notes": None}
        )

    assert magento_calls(magento.received) == [("GET", None), ("PUT", {"customer": expected})]
    assert magento.received[1].headers["content-type"] == "application/json"
    assert (outcome.ok, outcome.status_code, outcome.error) == (True, 200, None)


def test_magento_is_not_written_when_the_values_are_already_there(client: httpx.Client) -> None:
    # crm_notes is absent: Magento leaves out empty attributes, so it is cleared already.
    read = magento_customer([{"attribute_code": "crm_stage", "value": "customer"}])
    magento = ScriptedServer([json_reply(read)])
    with magento.running():
        outcome = write_magento(client, magento, {"stage": "customer", "notes": None})

    assert magento_calls(magento.received) == [("GET", None)]
    assert outcome == Outcome(ok=True, status_code=200, response="already up to date")


def test_a_crm_attribute_missing_in_magento_is_reported(client: httpx.Client) -> None:
    # Magento drops custom attributes it has no attribute for: the saved customer lacks it.
    magento = ScriptedServer(
        [json_reply(magento_customer(None)), json_reply(magento_customer(None))]
    )
    with magento.running():
        outcome = write_magento(client, magento, {"segment": "vip"})

    assert [method for method, _ in magento_calls(magento.received)] == ["GET", "PUT"]
    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, 200)
    assert "crm_segment" in (outcome.error or "")
    assert "create these customer attributes" in (outcome.error or "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "message": 'Invalid value of "%1" provided for the %2 field.',
                "parameters": ["x" * 3, "crm_segment"],
            },
            'Invalid value of "xxx" provided for the crm_segment field.',
        ),
        (
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "firstname"},
            },
            '"firstname" is required. Enter and try again.',
        ),
    ],
)
def test_a_refused_magento_update_names_magentos_filled_message(
    client: httpx.Client, body: dict[str, Any], message: str
) -> None:
    magento = ScriptedServer([json_reply(magento_customer(None)), json_reply(body, 400)])
    with magento.running():
        outcome = write_magento(client, magento, {"segment": "vip"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, 400)
    assert outcome.error == f"Magento answered 400: {message}"
    assert "jdoe@example.com" not in outcome.error


def test_a_customer_deleted_in_magento_is_permanent(client: httpx.Client) -> None:
    gone = {
        "message": "No such entity with %fieldName = %fieldValue",
        "parameters": {"fieldName": "customerId", "fieldValue": 2},
    }
    magento = ScriptedServer([json_reply(gone, 404)])
    with magento.running():
        outcome = write_magento(client, magento, {"segment": "vip"})

    assert magento_calls(magento.received) == [("GET", None)]
    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, 404)
    assert outcome.error == (
        "the customer no longer exists in Magento (deleted there): "
        "No such entity with customerId = 2"
    )


def test_an_unauthorised_magento_token_is_retried(client: httpx.Client) -> None:
    refused = {
        "message": "The consumer isn't authorized to access %resources.",
        "parameters": {"resources": "Magento_Customer::manage"},
    }
    magento = ScriptedServer([json_reply(refused, 401)])
    with magento.running():
        outcome = write_magento(client, magento, {"segment": "vip"})

    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, False, 401)
    assert "isn't authorized to access Magento_Customer::manage." in (outcome.error or "")
