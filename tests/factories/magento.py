"""Magento 2 / Adobe Commerce: the docs' REST order, as the shop's API returns it."""

from __future__ import annotations

import json
from typing import Any

from tests.factories.connectors import fixture_bytes

VENDOR = "magento2"


def fixture_order() -> dict[str, Any]:
    """The REST order of the docs, without its two '...' lines (and the comma they
    leave trailing), in memory."""
    text = fixture_bytes(VENDOR, "rest_GET-V1-orders-3_response.json-with-ellipsis.txt").decode()
    lines = [line for line in text.splitlines() if line.strip() != "..."]
    cleaned: list[str] = []
    for line in lines:
        if line.strip().startswith(("]", "}")) and cleaned and cleaned[-1].rstrip().endswith(","):
            cleaned[-1] = cleaned[-1].rstrip()[:-1]
        cleaned.append(line)
    return dict(json.loads("\n".join(cleaned)))
