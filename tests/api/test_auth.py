"""API keys: scopes are enforced, and a key bound to program A cannot reach program B."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from partnerloop.core.crypto import hash_token
from partnerloop.orders.models import Conversion
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import create_link_api


def _key(api: httpx.Client, scope: str, program_id: str | None = None) -> str:
    response = api.post(
        "/api/v1/api-keys", json={"name": f"{scope} key", "scope": scope, "program_id": program_id}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _conversion(program_id: str, order_id: str = "o-1") -> dict[str, str]:
    return {"program_id": program_id, "order_id": order_id, "amount": "10.00", "currency": "EUR"}


def test_no_key_or_a_bad_key_is_401(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/api/v1/programs").json()["code"] == "missing_api_key"
        for bad in (
            "Bearer nonsense",
            "Bearer pl_key_01M86DA1PNNAJBWVBJCMRMY65N_wrongsecret",
            "Basic abc",
        ):
            response = anonymous.get("/api/v1/programs", headers={"Authorization": bad})
            assert response.status_code == 401
            assert response.json()["code"] in ("invalid_api_key", "missing_api_key")


def test_key_is_shown_once_and_stored_hashed(server: Server) -> None:
    with server.client() as api:
        created = api.post("/api/v1/api-keys", json={"name": "once", "scope": "read"}).json()
        listed = api.get("/api/v1/api-keys").json()["items"]

    assert created["key"].startswith("pl_" + created["id"] + "_")
    assert [k["key"] for k in listed if k["id"] == created["id"]] == [None]
    from partnerloop.access.models import ApiKey

    with server.runtime.sessions() as db:
        row = db.get(ApiKey, created["id"])
        assert row is not None
        # pl_<30-char key id>_<secret>: only the secret's SHA-256 is kept.
        secret = created["key"][len("pl_") + len(created["id"]) + 1 :]
        assert row.secret_hash == hash_token(secret)
        assert secret not in row.secret_hash


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [("read", {"read"}), ("write", {"read", "write"}), ("admin", {"read", "write", "admin"})],
)
def test_scopes_are_enforced(server: Server, scope: str, allowed: set[str]) -> None:
    with server.client() as admin:
        program = create_program_api(admin)
        affiliate = create_affiliate_api(admin, program["id"], approve=False)
        key = _key(admin, scope)
    with server.client(key) as api:
        read = api.get("/api/v1/commissions", params={"program_id": program["id"]})
        write = api.post("/api/v1/conversions", json=_conversion(program["id"]))
        admin_call = api.post(f"/api/v1/affiliates/{affiliate['id']}/approve")

    assert (read.status_code == 200) == ("read" in allowed)
    assert (write.status_code == 201) == ("write" in allowed)
    assert (admin_call.status_code == 200) == ("admin" in allowed)
    for response in (read, write, admin_call):
        if response.status_code == 403:
            assert response.json()["code"] == "insufficient_scope"
    with server.runtime.sessions() as db:
        stored = db.scalar(
            select(func.count())
            .select_from(Conversion)
            .where(Conversion.program_id == program["id"])
        )
    assert stored == (1 if "write" in allowed else 0)


def test_key_bound_to_program_a_cannot_touch_program_b(server: Server) -> None:
    with server.client() as admin:
        program_a = create_program_api(admin, name="A")
        program_b = create_program_api(admin, name="B")
        affiliate_b = create_affiliate_api(admin, program_b["id"])
        link_b = create_link_api(admin, program_b["id"], affiliate_b["id"])
        order_b = admin.post(
            "/api/v1/conversions", json=_conversion(program_b["id"], "b-order")
        ).json()
        key_a = _key(admin, "admin", program_a["id"])

    with server.client(key_a) as api:
        # Reads of B look exactly like reads of something that does not exist.
        assert api.get(f"/api/v1/programs/{program_b['id']}").status_code == 404
        assert api.get("/api/v1/stats", params={"program_id": program_b["id"]}).status_code == 404
        assert (
            api.get("/api/v1/commissions", params={"program_id": program_b["id"]}).status_code
            == 404
        )
        assert api.get(f"/api/v1/conversions/{order_b['id']}").status_code == 404
        assert api.get(f"/api/v1/affiliates/{affiliate_b['id']}").status_code == 404
        # Unfiltered lists only show A.
        assert [p["id"] for p in api.get("/api/v1/programs").json()["items"]] == [program_a["id"]]
        assert api.get("/api/v1/links").json()["items"] == []
        assert api.get("/api/v1/conversions").json()["items"] == []
        # Writes into B are refused and store nothing.
        write = api.post("/api/v1/conversions", json=_conversion(program_b["id"], "sneaky"))
        approve = api.post(f"/api/v1/affiliates/{affiliate_b['id']}/approve")
        disable = api.post(f"/api/v1/links/{link_b['id']}/disable")
        create_program = api.post(
            "/api/v1/programs",
            json={
                "name": "C",
                "currency": "EUR",
                "allowed_domains": ["c.example"],
                "commission": {"type": "fixed", "value": "1.00"},
            },
        )
        wider_key = api.post("/api/v1/api-keys", json={"name": "escalate", "scope": "admin"})

    assert [r.status_code for r in (write, approve, disable)] == [404, 404, 404]
    assert create_program.status_code == 403
    assert wider_key.status_code == 403
    with server.runtime.sessions() as db:
        assert (
            db.scalar(
                select(func.count()).select_from(Conversion).where(Conversion.order_id == "sneaky")
            )
            == 0
        )
    with server.client() as admin:
        assert (
            admin.get("/api/v1/links", params={"program_id": program_b["id"]}).json()["items"][0][
                "disabled"
            ]
            is False
        )


def test_revoked_key_stops_working_at_once(server: Server) -> None:
    with server.client() as admin:
        created = admin.post("/api/v1/api-keys", json={"name": "temp", "scope": "read"}).json()
        with server.client(created["key"]) as api:
            assert api.get("/api/v1/programs").status_code == 200

            assert admin.delete(f"/api/v1/api-keys/{created['id']}").json()["revoked"] is True

            assert api.get("/api/v1/programs").status_code == 401
