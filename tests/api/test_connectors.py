"""The connectors API: validation with the field at fault, secrets never shown,
scopes and program binding, secret rotation, and the documented contract."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from partnerloop.integrations.models import Connector
from tests.conftest import Server
from tests.factories.programs import create_program_api


def _key(api: httpx.Client, scope: str, program_id: str | None = None) -> str:
    response = api.post(
        "/api/v1/api-keys", json={"name": f"{scope} key", "scope": scope, "program_id": program_id}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _body(program_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "program_id": program_id,
        "kind": "woocommerce",
        "settings": {"store_url": "https://shop.example.com/"},
        "secret": "woo&amp;secret",
    }
    body.update(overrides)
    return body


def test_connect_a_shop_in_one_call(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, currency="USD")

        created = api.post(
            "/api/v1/connectors",
            json=_body(
                program["id"],
                settings={
                    "store_url": "https://shop.example.com/",
                    "consumer_key": "ck_abc",
                    "consumer_secret": "cs_def",
                },
            ),
        )
        fetched = api.get(f"/api/v1/connectors/{created.json()['id']}")
        listed = api.get("/api/v1/connectors", params={"program_id": program["id"]})

    assert created.status_code == 201, created.text
    out = created.json()
    assert created.headers["location"] == f"/api/v1/connectors/{out['id']}"
    assert out["id"].startswith("con_")
    assert (out["kind"], out["program_id"]) == ("woocommerce", program["id"])
    assert out["webhook_url"] == f"{server.runtime.settings.public_url}/hooks/{out['id']}"
    # Credentials given inside settings are kept encrypted, never echoed as settings.
    assert out["settings"] == {"store_url": "https://shop.example.com"}
    assert (out["has_credentials"], out["rotating_secret"]) == (True, False)
    assert fetched.json() == out
    assert [c["id"] for c in listed.json()["items"]] == [out["id"]]
    text = created.text + fetched.text + listed.text
    assert "woo&amp;secret" not in text
    assert "cs_def" not in text
    with server.runtime.sessions() as db:
        row = db.get(Connector, out["id"])
        assert row is not None
        assert "woo&amp;secret" not in row.secret_enc
        assert row.credentials_enc is not None
        assert "cs_def" not in row.credentials_enc


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"kind": "bigcommerce"}, "unknown_connector_kind", "kind"),
        ({"settings": {}}, "missing_setting", "settings.store_url"),
        ({"settings": {"store_url": "shop.example.com"}}, "invalid_url", "settings.store_url"),
        (
            {"settings": {"store_url": "https://s.example.com", "colour": "red"}},
            "unknown_setting",
            "settings.colour",
        ),
        ({"settings": {"store_url": 42}}, "invalid_setting", "settings.store_url"),
        ({"secret": ""}, "invalid_secret", "secret"),
        ({"secret": " padded "}, "invalid_secret", "secret"),
        ({"credentials": {"password": "x"}}, "unknown_credential", "credentials.password"),
        ({"credentials": {"consumer_key": ""}}, "invalid_credential", "credentials.consumer_key"),
        (
            {
                "kind": "shopify",
                "settings": {"shop_domain": "a.myshopify.com", "api_base_url": "ftp://x"},
            },
            "invalid_url",
            "settings.api_base_url",
        ),
    ],
)
def test_bad_connector_input_is_a_422_with_the_field_and_stores_nothing(
    server: Server, overrides: dict[str, Any], code: str, field: str
) -> None:
    with server.client() as api:
        program = create_program_api(api)

        response = api.post("/api/v1/connectors", json=_body(program["id"], **overrides))
        listed = api.get("/api/v1/connectors", params={"program_id": program["id"]})

    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == (code, field)
    assert listed.json()["items"] == []


def test_unknown_program_is_404(server: Server) -> None:
    with server.client() as api:
        response = api.post("/api/v1/connectors", json=_body("prg_01AAAAAAAAAAAAAAAAAAAAAAAA"))
    assert response.status_code == 404


def test_scopes_and_program_binding(server: Server) -> None:
    with server.client() as api:
        mine = create_program_api(api)
        other = create_program_api(api)
        theirs = api.post("/api/v1/connectors", json=_body(other["id"])).json()
        write_key = _key(api, "write", mine["id"])
        admin_mine = _key(api, "admin", mine["id"])

    with server.client(write_key) as writer:
        # Connecting a shop is an admin act: a write key cannot.
        assert writer.post("/api/v1/connectors", json=_body(mine["id"])).status_code == 403
        assert writer.get("/api/v1/connectors").status_code == 200
    with server.client(admin_mine) as admin:
        assert admin.post("/api/v1/connectors", json=_body(mine["id"])).status_code == 201
        # Program B's connector does not exist for a key bound to program A.
        assert admin.post("/api/v1/connectors", json=_body(other["id"])).status_code == 404
        assert admin.get(f"/api/v1/connectors/{theirs['id']}").status_code == 404
        rotate = admin.post(f"/api/v1/connectors/{theirs['id']}/secret", json={"secret": "x"})
        assert rotate.status_code == 404
        assert [c["program_id"] for c in admin.get("/api/v1/connectors").json()["items"]] == [
            mine["id"]
        ]


def test_rotation_keeps_the_previous_secret_until_the_next_rotation(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        connector = api.post("/api/v1/connectors", json=_body(program["id"])).json()
        path = f"/api/v1/connectors/{connector['id']}/secret"

        first = api.post(path, json={"secret": "second"})
        second = api.post(path, json={"secret": "third"})
        bad = api.post(path, json={"secret": ""})

    assert (first.status_code, first.json()["rotating_secret"]) == (200, True)
    assert second.status_code == 200
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_secret")
    from partnerloop.integrations import connectors

    with server.runtime.sessions() as db:
        row = db.get_one(Connector, connector["id"])
        assert connectors.secrets_of(server.runtime.cipher, row) == ["third", "second"]


def test_the_contract_is_in_the_openapi_document(server: Server) -> None:
    with server.client() as api:
        spec = api.get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/connectors"])
    assert "post" in paths["/api/v1/connectors/{connector_id}/secret"]
    assert {"post", "get"} <= set(paths["/hooks/{connector_id}"])
    assert "get" in paths["/api/v1/orders"]
    order = spec["components"]["schemas"]["OrderOut"]["properties"]
    assert {
        "id",
        "external_id",
        "source",
        "total",
        "currency",
        "status",
        "affiliate_id",
        "customer",
        "items",
    } <= set(order)
    assert "webhook_url" in spec["components"]["schemas"]["ConnectorOut"]["properties"]


def test_orders_filter_by_status_is_validated(server: Server) -> None:
    with server.client() as api:
        response = api.get("/api/v1/orders", params={"status": "shipped"})
    assert (response.status_code, response.json()["field"]) == (422, "status")
