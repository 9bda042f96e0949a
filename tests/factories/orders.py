from __future__ import annotations

from typing import Any

import httpx


def report_order(
    api: httpx.Client, program_id: str, order_id: str, amount: str, **extra: Any
) -> dict[str, Any]:
    """POST /api/v1/conversions in EUR and expect a new conversion."""
    response = api.post(
        "/api/v1/conversions",
        json={
            "program_id": program_id,
            "order_id": order_id,
            "amount": amount,
            "currency": "EUR",
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def customer_sale(
    api: httpx.Client, program_id: str, order_id: str, amount: str, email: str, **extra: Any
) -> dict[str, Any]:
    """A new EUR order of the customer with this e-mail (what CRM syncs are about)."""
    return report_order(api, program_id, order_id, amount, customer_email=email, **extra)
