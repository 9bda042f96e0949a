from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


def create_link_api(
    api: httpx.Client,
    program_id: str,
    affiliate_id: str,
    *,
    destination: str = "https://shop.example.com/p/1",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "program_id": program_id,
        "affiliate_id": affiliate_id,
        "destination_url": destination,
        **extra,
    }
    response = api.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def click(
    api: httpx.Client,
    code: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Follow a tracking link like a browser would (one hop) and return the click id."""
    response = api.get(
        f"/r/{code}", params=params, headers={"User-Agent": BROWSER_UA, **(headers or {})}
    )
    assert response.status_code == 302, response.text
    return click_id_of(response)


def click_id_of(response: httpx.Response) -> str:
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return query["plclid"][0]
