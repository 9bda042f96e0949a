from __future__ import annotations

import secrets
from typing import Any

import httpx


def unique_email() -> str:
    return f"aff-{secrets.token_hex(4)}@partners.example"


def create_affiliate_api(
    api: httpx.Client, program_id: str, *, approve: bool = True, **overrides: Any
) -> dict[str, Any]:
    body = {"program_id": program_id, "email": unique_email(), "name": "Test Affiliate"}
    body.update(overrides)
    response = api.post("/api/v1/affiliates", json=body)
    assert response.status_code == 201, response.text
    affiliate = dict(response.json())
    if approve:
        approved = api.post(f"/api/v1/affiliates/{affiliate['id']}/approve")
        assert approved.status_code == 200, approved.text
        affiliate = dict(approved.json())
    return affiliate
