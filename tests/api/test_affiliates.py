"""Affiliates: sign-up, enrollment in several programs, approval flow."""

from __future__ import annotations

from tests.conftest import Server
from tests.factories.affiliates import unique_email
from tests.factories.programs import create_program_api


def test_sign_up_is_pending_and_signing_up_again_is_harmless(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        other = create_program_api(api)
        email = unique_email()

        first = api.post(
            "/api/v1/affiliates", json={"program_id": program["id"], "email": email, "name": "Ann"}
        )
        again = api.post(
            "/api/v1/affiliates",
            json={"program_id": program["id"], "email": email.upper(), "name": "Ann"},
        )
        elsewhere = api.post(
            "/api/v1/affiliates", json={"program_id": other["id"], "email": email, "name": "Ann"}
        )

        assert (first.status_code, first.json()["status"], first.json()["email"]) == (
            201,
            "pending",
            email,
        )
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
        assert elsewhere.json()["id"] == first.json()["id"]
        assert sorted(elsewhere.json()["program_ids"]) == sorted([program["id"], other["id"]])


def test_status_flow(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        affiliate = api.post(
            "/api/v1/affiliates",
            json={"program_id": program["id"], "email": unique_email(), "name": "B"},
        ).json()
        path = f"/api/v1/affiliates/{affiliate['id']}"

        assert api.post(f"{path}/suspend").json()["code"] == "invalid_transition"
        assert api.post(f"{path}/reject").json()["status"] == "rejected"
        assert api.post(f"{path}/approve").json()["status"] == "approved"
        assert api.post(f"{path}/suspend").json()["status"] == "suspended"
        assert api.post(f"{path}/reject").status_code == 409
        assert api.post(f"{path}/approve").json()["status"] == "approved"

        listed = api.get(
            "/api/v1/affiliates", params={"program_id": program["id"], "status": "approved"}
        ).json()["items"]
        assert [a["id"] for a in listed] == [affiliate["id"]]
        assert (
            api.get(
                "/api/v1/affiliates", params={"program_id": program["id"], "status": "pending"}
            ).json()["items"]
            == []
        )
