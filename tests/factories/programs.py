"""Programs through the public API (committed data) and through services (rolled back)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program


def program_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Test shop",
        "currency": "EUR",
        "cookie_days": 30,
        "allowed_domains": ["shop.example.com"],
        "commission": {"type": "percentage", "value": "10"},
        "hold_days": 30,
    }
    body.update(overrides)
    return body


def create_program_api(api: httpx.Client, **overrides: Any) -> dict[str, Any]:
    response = api.post("/api/v1/programs", json=program_body(**overrides))
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_program(session: Session, **overrides: Any) -> Program:
    values: dict[str, Any] = {
        "name": "Test shop",
        "currency": "EUR",
        "cookie_days": 30,
        "allowed_domains": ["shop.example.com"],
        "commission_type": "percentage",
        "commission_value": "10",
        "hold_days": 30,
    }
    values.update(overrides)
    now = values.pop("now", utcnow())
    return programs.create(session, now=now, **values).program
