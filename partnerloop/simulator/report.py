"""What a scenario saw, in numbers, and how it is printed: one line per
invariant (PASS/FAIL with counts), then throughput and latencies."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from partnerloop.simulator.fake_shop import ShopStats
from partnerloop.simulator.plan import Plan
from partnerloop.simulator.reconcile import Observed

if TYPE_CHECKING:
    from partnerloop.simulator.run import Outcome


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least `fraction` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Spread:
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    count: int

    @classmethod
    def of(cls, seconds: list[float]) -> Spread:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 1)

        return cls(
            ms(percentile(seconds, 0.50)),
            ms(percentile(seconds, 0.95)),
            ms(percentile(seconds, 0.99)),
            ms(max(seconds) if seconds else None),
            len(seconds),
        )

    def text(self) -> str:
        if not self.count:
            return "not observed"
        return (
            f"p50 {self.p50_ms:g} ms, p95 {self.p95_ms:g} ms, p99 {self.p99_ms:g} ms, "
            f"max {self.max_ms:g} ms (n={self.count})"
        )


@dataclass(frozen=True)
class Figures:
    orders: int
    webhooks: int
    send_seconds: float
    orders_per_second: float
    webhooks_per_second: float
    answers: dict[str, int]
    webhook_post: Spread
    click_get: Spread
    order_to_commission: Spread
    order_to_crm: Spread
    drained_seconds: float | None
    crm_calls: dict[int, int]


def figures_of(
    plan: Plan,
    stats: ShopStats,
    seen: Observed,
    *,
    sent_seconds: float,
    drained_seconds: float | None,
    crm_calls: dict[int, int],
) -> Figures:
    number_of = {str(order.order_id): order.order_id for order in plan.orders}
    to_commission = []
    for row in seen.commissions:
        sent = stats.first_sent.get(number_of.get(str(row["order_id"]), -1))
        if sent is not None:
            # The commission's own timestamp (the instance's clock; the same
            # machine's when it runs locally).
            created = datetime.fromisoformat(str(row["created_at"]).replace("Z", "+00:00"))
            to_commission.append(max(0.0, created.timestamp() - sent))
    first_order: dict[str, float] = {}
    for order in plan.orders:
        sent = stats.first_sent.get(order.order_id)
        email = order.shopper.email.lower()
        if sent is not None and (email not in first_order or sent < first_order[email]):
            first_order[email] = sent
    to_crm = [
        max(0.0, contact.first_seen - first_order[email])
        for contact in seen.contacts
        if (email := contact.properties.get("email", "").lower()) in first_order
    ]
    seconds = max(sent_seconds, 1e-9)
    return Figures(
        orders=len(plan.orders),
        webhooks=len(stats.webhook_seconds),
        send_seconds=round(sent_seconds, 2),
        orders_per_second=round(len(stats.first_sent) / seconds, 1),
        webhooks_per_second=round(len(stats.webhook_seconds) / seconds, 1),
        answers=dict(stats.statuses),
        webhook_post=Spread.of(stats.webhook_seconds),
        click_get=Spread.of(stats.click_seconds),
        order_to_commission=Spread.of(to_commission),
        order_to_crm=Spread.of(to_crm),
        drained_seconds=None if drained_seconds is None else round(drained_seconds, 1),
        crm_calls=crm_calls,
    )


def print_outcome(console: Console, outcome: Outcome) -> None:
    scenario, figures = outcome.scenario, outcome.figures
    console.print(
        f"[bold]scenario {scenario.name}[/bold] (seed {outcome.seed}): {scenario.describe()}, "
        f"{figures.webhooks} webhooks"
    )
    console.print(f"  plan: {outcome.plan.summary()}")
    for verdict in outcome.verdicts:
        style = "green" if verdict.passed else "red"
        console.print(f"  [{style}]{escape(verdict.line())}[/{style}]", soft_wrap=True)
    answers = ", ".join(f"{count} {answer}" for answer, count in sorted(figures.answers.items()))
    console.print(
        f"  sent {figures.orders} orders in {figures.send_seconds:g} s: "
        f"{figures.orders_per_second:g} orders/s, {figures.webhooks_per_second:g} webhooks/s "
        f"({answers or 'no answers'})"
    )
    console.print(f"  webhook POST latency: {figures.webhook_post.text()}")
    console.print(f"  click (GET /r/...) latency: {figures.click_get.text()}")
    console.print(f"  order -> commission: {figures.order_to_commission.text()}")
    console.print(f"  order -> CRM contact: {figures.order_to_crm.text()}")
    drained = "timed out" if figures.drained_seconds is None else f"{figures.drained_seconds:g} s"
    calls = ", ".join(f"{count}x {status}" for status, count in sorted(figures.crm_calls.items()))
    console.print(f"  drained {drained} after the last order; CRM calls so far: {calls or 'none'}")
    for error in outcome.errors[:5]:
        console.print(f"  [yellow]shop error: {escape(error)}[/yellow]", soft_wrap=True)


def as_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "scenario": outcome.scenario.name,
        "seed": outcome.seed,
        "passed": outcome.passed,
        "invariants": [
            {"name": v.name, "passed": v.passed, "checked": v.checked, "problems": v.problems}
            for v in outcome.verdicts
        ],
        "figures": asdict(outcome.figures),
        "errors": outcome.errors,
    }
