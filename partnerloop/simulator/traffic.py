"""Simulated shoppers and shops, through the public endpoints only: clicks on
/r/{code}, orders on POST /api/v1/conversions and /postback, the odd refund.
Used by `partnerloop demo`; the staging scenarios of R15 grow from here."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)


@dataclass(frozen=True)
class Scenario:
    base_url: str
    api_key: str
    program_id: str
    postback_token: str | None
    link_codes: list[str]
    coupons: list[str]
    currency: str = "EUR"
    clicks_per_second: float = 2.0
    conversion_rate: float = 0.3


def run_traffic(
    scenario: Scenario, stop: threading.Event, *, seed: int | None = None
) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"clicks": 0, "conversions": 0, "postbacks": 0, "refunds": 0, "errors": 0}
    headers = {"Authorization": f"Bearer {scenario.api_key}"}
    orders: list[tuple[str, int]] = []
    with httpx.Client(base_url=scenario.base_url, timeout=10.0, follow_redirects=False) as client:
        while not stop.wait(1.0 / scenario.clicks_per_second):
            try:
                code = rng.choice(scenario.link_codes)
                response = client.get(
                    f"/r/{code}",
                    params={"sub1": rng.choice(["newsletter", "instagram", "blog"])},
                    headers={
                        "User-Agent": rng.choice(USER_AGENTS),
                        "Referer": "https://blog.example/post",
                    },
                )
                counts["clicks"] += 1
                location = response.headers.get("location", "")
                click_id = parse_qs(urlsplit(location).query).get("plclid", [None])[0]
                roll = rng.random()
                if roll < scenario.conversion_rate and click_id:
                    order_id = f"demo-{rng.randrange(10**9)}"
                    cents = rng.randrange(1500, 25000)
                    if scenario.postback_token and rng.random() < 0.25:
                        client.get(
                            "/postback",
                            params={
                                "token": scenario.postback_token,
                                "order_id": order_id,
                                "amount": f"{cents // 100}.{cents % 100:02d}",
                                "click_id": click_id,
                            },
                        ).raise_for_status()
                        counts["postbacks"] += 1
                    else:
                        _convert(client, headers, scenario, order_id, cents, click_id=click_id)
                        counts["conversions"] += 1
                    orders.append((order_id, cents))
                elif roll < scenario.conversion_rate + 0.05 and scenario.coupons:
                    order_id = f"demo-{rng.randrange(10**9)}"
                    cents = rng.randrange(1500, 25000)
                    _convert(
                        client,
                        headers,
                        scenario,
                        order_id,
                        cents,
                        coupon=rng.choice(scenario.coupons),
                    )
                    counts["conversions"] += 1
                    orders.append((order_id, cents))
                if orders and rng.random() < 0.03:
                    order_id, cents = orders.pop(rng.randrange(len(orders)))
                    part = cents if rng.random() < 0.5 else cents // 2
                    client.post(
                        "/api/v1/refunds",
                        headers=headers,
                        json={
                            "program_id": scenario.program_id,
                            "order_id": order_id,
                            "amount": f"{part // 100}.{part % 100:02d}",
                            "currency": scenario.currency,
                            "refund_id": f"{order_id}-r1",
                        },
                    ).raise_for_status()
                    counts["refunds"] += 1
            except httpx.HTTPError:
                counts["errors"] += 1
    return counts


def _convert(
    client: httpx.Client,
    headers: dict[str, str],
    scenario: Scenario,
    order_id: str,
    cents: int,
    *,
    click_id: str | None = None,
    coupon: str | None = None,
) -> None:
    client.post(
        "/api/v1/conversions",
        headers=headers,
        json={
            "program_id": scenario.program_id,
            "order_id": order_id,
            "amount": f"{cents // 100}.{cents % 100:02d}",
            "currency": scenario.currency,
            "click_id": click_id,
            "coupon": coupon,
            "customer_email": f"shopper{cents}@example.com",
        },
    ).raise_for_status()
