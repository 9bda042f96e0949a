"""After a scenario: what partnerloop holds, checked against the plan.

Pure: takes what the API answered and what the fake CRM holds, returns one
verdict per invariant. Expected commissions are computed here from the rule
the simulator configured and partnerloop.core.money's one rounding rule, not
read back from partnerloop.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from partnerloop.core.money import format_amount
from partnerloop.simulator.fake_crm import Contact
from partnerloop.simulator.plan import Plan, PlannedOrder, Shopper

MAX_EXAMPLES = 3


@dataclass
class Verdict:
    name: str
    checked: int
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        good = self.checked - min(len(self.problems), self.checked)
        word = "PASS" if self.passed else "FAIL"
        text = f"{word}  {self.name}: {good}/{self.checked}"
        if self.problems:
            shown = "; ".join(self.problems[:MAX_EXAMPLES])
            more = len(self.problems) - MAX_EXAMPLES
            text += f" ({len(self.problems)} wrong: {shown}{f'; {more} more' if more > 0 else ''})"
        return text


@dataclass(frozen=True)
class Observed:
    orders: list[dict[str, Any]]  # GET /api/v1/orders of the program
    commissions: list[dict[str, Any]]  # GET /api/v1/commissions of the program
    contacts: list[Contact]  # what the fake CRM holds
    stuck: dict[str, int]  # "inbound rejected" -> count, ... (quarantined or dead jobs)


@dataclass(frozen=True)
class Expectation:
    """The facts a plan is checked against that only the set-up knows."""

    rate: Decimal
    currency: str
    affiliate_ids: list[str]
    affiliate_names: list[str]


def reconcile(plan: Plan, expect: Expectation, seen: Observed) -> list[Verdict]:
    return [
        _one_conversion_each(plan, seen),
        _attribution(plan, expect, seen),
        _states(plan, expect, seen),
        _commissions(plan, expect, seen),
        _crm(plan, expect, seen),
        _nothing_stuck(seen),
    ]


def _by_order(seen: Observed) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in seen.orders:
        found.setdefault(str(row["external_id"]), []).append(row)
    return found


def _one_conversion_each(plan: Plan, seen: Observed) -> Verdict:
    verdict = Verdict("every order has exactly one conversion", len(plan.orders))
    found = _by_order(seen)
    planned = {str(order.order_id) for order in plan.orders}
    for order in plan.orders:
        rows = found.get(str(order.order_id), [])
        if len(rows) != 1:
            verdict.problems.append(f"order #{order.number} has {len(rows)}")
    for external_id in sorted(set(found) - planned):
        verdict.problems.append(f"order {external_id} was never sent")
    return verdict


def _single(seen: dict[str, list[dict[str, Any]]], order: PlannedOrder) -> dict[str, Any] | None:
    rows = seen.get(str(order.order_id), [])
    return rows[0] if len(rows) == 1 else None


def _attribution(plan: Plan, expect: Expectation, seen: Observed) -> Verdict:
    verdict = Verdict("every conversion is credited to the right affiliate", len(plan.orders))
    found = _by_order(seen)
    for order in plan.orders:
        row = _single(found, order)
        if row is None:
            verdict.problems.append(f"order #{order.number} has no single conversion")
            continue
        wanted = None if order.affiliate is None else expect.affiliate_ids[order.affiliate]
        if row["affiliate_id"] != wanted:
            verdict.problems.append(
                f"order #{order.number} ({order.evidence}): {row['affiliate_id']} "
                f"instead of {wanted}"
            )
    return verdict


def _states(plan: Plan, expect: Expectation, seen: Observed) -> Verdict:
    verdict = Verdict("every order has its final status and amounts", len(plan.orders))
    found = _by_order(seen)
    for order in plan.orders:
        row = _single(found, order)
        if row is None:
            verdict.problems.append(f"order #{order.number} has no single conversion")
            continue
        wanted = (
            order.status,
            format_amount(order.subtotal_minor, expect.currency),
            format_amount(order.refunded_minor, expect.currency),
        )
        got = (row["status"], row["amount"], row["refunded_amount"])
        if got != wanted:
            verdict.problems.append(
                f"order #{order.number}: status/amount/refunded {'/'.join(got)} "
                f"instead of {'/'.join(wanted)}"
            )
    return verdict


def _commissions(plan: Plan, expect: Expectation, seen: Observed) -> Verdict:
    verdict = Verdict("every commission has the right amount (none when unpaid)", len(plan.orders))
    by_order: dict[str, list[dict[str, Any]]] = {}
    for row in seen.commissions:
        by_order.setdefault(str(row["order_id"]), []).append(row)
    for order in plan.orders:
        rows = by_order.pop(str(order.order_id), [])
        wanted = order.expected_commission(expect.rate)
        if wanted is None:
            if rows:
                verdict.problems.append(
                    f"order #{order.number} ({order.status}, "
                    f"{'organic' if order.affiliate is None else 'referred'}) has "
                    f"{len(rows)} commission(s), expected none"
                )
            continue
        amounts = [row["amount"] for row in rows]
        expected = format_amount(wanted, expect.currency)
        if amounts != [expected]:
            verdict.problems.append(
                f"order #{order.number}: {amounts or 'no commission'} instead of [{expected}] "
                f"({expect.rate} % of {format_amount(order.net_minor, expect.currency)})"
            )
    for order_id, rows in sorted(by_order.items()):
        verdict.problems.append(f"{len(rows)} commission(s) for order {order_id}, never sent")
    return verdict


def expected_contact(
    shopper: Shopper, orders: list[PlannedOrder], expect: Expectation
) -> dict[str, str]:
    """The HubSpot properties partnerloop's default mapping must have written."""
    counted = [order for order in orders if order.status != "cancelled"]
    properties = {
        "email": shopper.email.lower(),
        "firstname": shopper.first_name,
        "lastname": shopper.last_name,
        "partnerloop_order_count": str(len(counted)),
        "partnerloop_lifetime_value": format_amount(
            sum(order.net_minor for order in counted), expect.currency
        ),
    }
    if shopper.affiliate is not None:
        properties |= {
            "partnerloop_lead_source": "Affiliate",
            "partnerloop_affiliate_id": expect.affiliate_ids[shopper.affiliate],
            "partnerloop_affiliate": expect.affiliate_names[shopper.affiliate],
        }
    return properties


def _crm(plan: Plan, expect: Expectation, seen: Observed) -> Verdict:
    orders_of: dict[str, list[PlannedOrder]] = {}
    for order in plan.orders:
        orders_of.setdefault(order.shopper.email.lower(), []).append(order)
    shoppers = {s.email.lower(): s for s in plan.shoppers if s.email.lower() in orders_of}
    verdict = Verdict(
        "every customer is in the CRM exactly once, with the right fields", len(shoppers)
    )
    held = Counter(contact.properties.get("email", "").lower() for contact in seen.contacts)
    latest = {contact.properties.get("email", "").lower(): contact for contact in seen.contacts}
    for email, shopper in shoppers.items():
        if held[email] != 1:
            verdict.problems.append(f"{_masked(email)} is there {held[email]} times")
            continue
        wanted = expected_contact(shopper, orders_of[email], expect)
        got = latest[email].properties
        wrong = sorted(name for name, value in wanted.items() if got.get(name) != value)
        if shopper.affiliate is None:
            wrong += sorted(
                name
                for name in ("partnerloop_lead_source", "partnerloop_affiliate_id")
                if got.get(name)
            )
        if wrong:
            verdict.problems.append(
                f"{_masked(email)}: "
                + ", ".join(f"{name}={got.get(name)!r} not {wanted.get(name)!r}" for name in wrong)
            )
    marker = f"-{plan.name}-"
    for email in sorted(held):
        if marker in email and email not in shoppers:
            verdict.problems.append(f"{_masked(email)} never ordered")
    return verdict


def _masked(email: str) -> str:
    # Simulated addresses, but the habit holds: no whole e-mail address in output.
    local, _, domain = email.partition("@")
    return f"{local[:14]}…@{domain}"


def _nothing_stuck(seen: Observed) -> Verdict:
    verdict = Verdict("no event quarantined, no message dead-lettered", 1)
    for what, count in sorted(seen.stuck.items()):
        if count:
            verdict.problems.append(f"{count} {what}")
    return verdict
