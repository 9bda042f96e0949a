"""What a scenario will do, decided up front from the seed: shoppers, orders,
the Shopify events each order produces (in the order, and as many times, as
they will be sent), and what partnerloop must end up with.

Pure: no I/O, no clock. The same seed and parameters give the same plan, so a
failing run can be repeated exactly.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from partnerloop.core.money import percentage_of

# How a shopper's order carries the affiliate: the click id on the landing page
# URL or in a cart attribute (both read by the Shopify normaliser), a coupon
# code, or nothing at all (an organic order).
EVIDENCE = ("landing_site", "note_attribute", "coupon", "none")
PRODUCTS = (
    ("Aviator sunglasses", "SKU2006-001"),
    ("Lens Protection Plan (2 Year)", "LENS-PROTECT-2YR"),
    ("Premium Leather Case", "CASE-LEATHER-PREM"),
    ("Mid-century lounger", "SKU2006-020"),
    ("Canvas tote", "TOTE-CANVAS"),
)
FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dries", "Emma", "Farid", "Greet", "Hugo", "Ines", "Joost")
LAST_NAMES = ("Jansen", "Okafor", "de Vries", "Peeters", "Smit", "Bakker", "Visser", "Mulder")
COUPON_DISCOUNT_MINOR = 500  # a fixed 5.00 off the first line, as a Shopify fixed_amount code


@dataclass(frozen=True)
class Shopper:
    email: str  # as the shop sends it (some in mixed case: partnerloop keys on it lower-cased)
    first_name: str
    last_name: str
    shopify_id: int
    affiliate: int | None  # index of the affiliate who referred them; None: organic


@dataclass(frozen=True)
class Line:
    line_id: int
    name: str
    sku: str
    price_minor: int
    quantity: int
    discount_minor: int = 0

    @property
    def total_minor(self) -> int:
        return self.price_minor * self.quantity - self.discount_minor


@dataclass(frozen=True)
class OrderState:
    """One state of an order as a Shopify payload carries it."""

    lines: tuple[Line, ...]
    financial_status: str  # pending | paid | partially_refunded | voided
    updated_offset: int  # seconds after the order was placed (Shopify's updated_at)
    refunded: tuple[Refund, ...] = ()

    @property
    def subtotal_minor(self) -> int:
        return sum(line.total_minor for line in self.lines)


@dataclass(frozen=True)
class Refund:
    refund_id: int
    line: Line
    offset: int  # seconds after the order was placed

    @property
    def amount_minor(self) -> int:
        return self.line.total_minor


@dataclass(frozen=True)
class Event:
    topic: str  # orders/create, orders/paid, orders/updated, refunds/create
    state: OrderState | None  # None for refunds/create
    refund: Refund | None
    event_id: str  # X-Shopify-Event-Id: the same on every copy of one event
    copies: int = 1  # deliveries of this very event (Shopify retries and duplicates)


@dataclass
class PlannedOrder:
    order_id: int
    number: int
    shopper: Shopper
    evidence: str  # one of EVIDENCE
    affiliate: int | None
    events: list[Event]
    # What partnerloop must end up with:
    status: str  # paid | pending | cancelled
    subtotal_minor: int  # the commission base of the final state
    refunded_minor: int
    coupon: str | None = None
    click_id: str | None = field(default=None)  # filled in when the shopper clicks

    @property
    def net_minor(self) -> int:
        return self.subtotal_minor - self.refunded_minor

    def expected_commission(self, rate: Decimal) -> int | None:
        """The commission in minor units, or None when there must be none: an
        unattributed order, or one never paid (a failed or pending payment)."""
        if self.affiliate is None or self.status != "paid":
            return None
        return percentage_of(self.net_minor, rate)


@dataclass(frozen=True)
class Shape:
    """The knobs a scenario turns (see scenarios.py)."""

    orders: int
    affiliates: int = 3
    repeat_share: float = 0.2  # orders placed by a shopper who ordered before
    organic_share: float = 0.1
    coupon_share: float = 0.15
    refund_share: float = 0.1
    failed_share: float = 0.0  # payments that never complete (pending) or are voided
    duplicate_copies: int = 1  # deliveries of each event (2-3 for the duplicates scenario)
    resend_share: float = 0.0  # orders whose state is sent again under a new event id
    out_of_order: bool = False


@dataclass
class Plan:
    name: str
    orders: list[PlannedOrder]
    shoppers: list[Shopper]

    @property
    def webhooks(self) -> int:
        return sum(event.copies for order in self.orders for event in order.events)

    def summary(self) -> str:
        """What the plan holds, so a reader sees the run covered what it claims."""
        evidence = {kind: 0 for kind in EVIDENCE}
        for order in self.orders:
            evidence[order.evidence] += 1
        refunds = sum(1 for order in self.orders if order.refunded_minor)
        unpaid = {
            status: sum(1 for o in self.orders if o.status == status)
            for status in ("pending", "cancelled")
        }
        copies = sum(e.copies - 1 for order in self.orders for e in order.events)
        return (
            f"{evidence['landing_site'] + evidence['note_attribute']} by click "
            f"({evidence['note_attribute']} in a cart attribute), {evidence['coupon']} by coupon, "
            f"{evidence['none']} organic; {len(self.shoppers)} shoppers; {refunds} partly refunded; "
            f"{unpaid['pending']} never paid, {unpaid['cancelled']} voided; "
            f"{copies} redeliveries"
        )


def coupon_code(scenario: str, affiliate: int) -> str:
    return f"{scenario.replace('-', '').upper()[:10]}A{affiliate + 1}"


def make_plan(name: str, shape: Shape, *, seed: int) -> Plan:
    # A scenario's own stream: two scenarios in one run do not share draws.
    rng = random.Random(f"{seed}:{name}")
    shoppers: list[Shopper] = []
    orders: list[PlannedOrder] = []
    for number in range(shape.orders):
        shopper = _shopper(rng, name, shape, shoppers)
        evidence = _evidence(rng, shape, shopper)
        orders.append(_order(rng, name, shape, number, shopper, evidence))
    return Plan(name=name, orders=orders, shoppers=shoppers)


def _shopper(rng: random.Random, scenario: str, shape: Shape, known: list[Shopper]) -> Shopper:
    if known and rng.random() < shape.repeat_share:
        return rng.choice(known)
    index = len(known)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{first}.{last.replace(' ', '')}-{scenario}-{index}"
    # Some shops keep the case a shopper typed; partnerloop and HubSpot key on it lower-cased.
    mixed = rng.random() < 0.3
    email = f"{local}@Shoppers.Sim.Example" if mixed else f"{local}@shoppers.sim.example".lower()
    organic = rng.random() < shape.organic_share
    shopper = Shopper(
        email=email,
        first_name=first,
        last_name=last,
        shopify_id=rng.randrange(10**17, 10**18),  # above 2^53, as Shopify's are
        affiliate=None if organic else rng.randrange(shape.affiliates),
    )
    known.append(shopper)
    return shopper


def _evidence(rng: random.Random, shape: Shape, shopper: Shopper) -> str:
    if shopper.affiliate is None:
        return "none"
    roll = rng.random()
    if roll < shape.coupon_share:
        return "coupon"
    return "note_attribute" if roll < shape.coupon_share + 0.2 else "landing_site"


def _lines(rng: random.Random, *, coupon: bool) -> tuple[Line, ...]:
    lines = []
    for product in rng.sample(PRODUCTS, rng.randint(1, 3)):
        lines.append(
            Line(
                line_id=rng.randrange(10**17, 10**18),
                name=product[0],
                sku=product[1],
                price_minor=rng.randrange(600, 16000),
                quantity=rng.randint(1, 3),
            )
        )
    if coupon:
        first = lines[0]
        lines[0] = Line(
            first.line_id,
            first.name,
            first.sku,
            first.price_minor,
            first.quantity,
            COUPON_DISCOUNT_MINOR,
        )
    return tuple(lines)


def _event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _order(
    rng: random.Random,
    scenario: str,
    shape: Shape,
    number: int,
    shopper: Shopper,
    evidence: str,
) -> PlannedOrder:
    lines = _lines(rng, coupon=evidence == "coupon")
    order_id = rng.randrange(10**17, 10**18)
    refund: Refund | None = None
    if len(lines) > 1 and rng.random() < shape.refund_share:
        refund = Refund(refund_id=rng.randrange(10**17, 10**18), line=lines[-1], offset=3)
    failed = rng.random() < shape.failed_share
    events: list[Event]
    if failed:
        # The payment never completes: pending for good, or voided (Shopify's
        # financial_status for a failed authorisation), which cancels the order.
        voided = rng.random() < 0.5
        created = OrderState(lines, "pending", 0)
        events = [Event("orders/create", created, None, _event_id(rng))]
        if voided:
            events.append(
                Event("orders/updated", OrderState(lines, "voided", 1), None, _event_id(rng))
            )
        status, subtotal, refunded = (
            ("cancelled" if voided else "pending"),
            created.subtotal_minor,
            0,
        )
        refund = None
    elif shape.out_of_order:
        events, lines, refund = _out_of_order(rng, lines, refund)
        status, subtotal = "paid", sum(line.total_minor for line in lines)
        refunded = refund.amount_minor if refund else 0
    else:
        events = [
            Event("orders/create", OrderState(lines, "paid", 0), None, _event_id(rng)),
            Event("orders/paid", OrderState(lines, "paid", 1), None, _event_id(rng)),
        ]
        if refund is not None:
            events.append(Event("refunds/create", None, refund, _event_id(rng)))
            events.append(
                Event(
                    "orders/updated",
                    OrderState(lines, "partially_refunded", 4, (refund,)),
                    None,
                    _event_id(rng),
                )
            )
        status, subtotal = "paid", sum(line.total_minor for line in lines)
        refunded = refund.amount_minor if refund else 0
    if shape.resend_share and rng.random() < shape.resend_share:
        # The same state again under a new event id (a second webhook subscription
        # to the topic, or the shop re-sending): still one order.
        last = events[-1]
        events.append(Event(last.topic, last.state, last.refund, _event_id(rng)))
    if shape.duplicate_copies > 1:
        events = [
            Event(e.topic, e.state, e.refund, e.event_id, rng.randint(2, shape.duplicate_copies))
            for e in events
        ]
    return PlannedOrder(
        order_id=order_id,
        number=1001 + number,
        shopper=shopper,
        evidence=evidence,
        affiliate=shopper.affiliate,
        events=events,
        status=status,
        subtotal_minor=subtotal,
        refunded_minor=refunded,
        coupon=coupon_code(scenario, shopper.affiliate)
        if evidence == "coupon" and shopper.affiliate is not None
        else None,
    )


def _out_of_order(
    rng: random.Random, lines: tuple[Line, ...], refund: Refund | None
) -> tuple[list[Event], tuple[Line, ...], Refund | None]:
    """Events that arrive in another order than they happened (Shopify promises
    no order): returns them as sent, with the final lines and refund."""
    pattern = rng.choice(("paid_first", "refund_first", "reverse_updates"))
    if pattern == "refund_first" and refund is None and len(lines) > 1:
        refund = Refund(refund_id=rng.randrange(10**17, 10**18), line=lines[-1], offset=3)
    if pattern == "refund_first" and refund is not None:
        return (
            [
                Event("refunds/create", None, refund, _event_id(rng)),
                Event("orders/create", OrderState(lines, "paid", 0), None, _event_id(rng)),
                Event("orders/paid", OrderState(lines, "paid", 1), None, _event_id(rng)),
            ],
            lines,
            refund,
        )
    if pattern == "reverse_updates" and len(lines) > 1:
        # The order was edited (its last line removed) after it was paid; the
        # newest state arrives first, the older ones after it must change nothing.
        edited = lines[:-1]
        return (
            [
                Event("orders/updated", OrderState(edited, "paid", 3), None, _event_id(rng)),
                Event("orders/paid", OrderState(lines, "paid", 1), None, _event_id(rng)),
                Event("orders/create", OrderState(lines, "pending", 0), None, _event_id(rng)),
            ],
            edited,
            None,
        )
    # Paid before created: orders/paid overtakes orders/create (pending).
    return (
        [
            Event("orders/paid", OrderState(lines, "paid", 1), None, _event_id(rng)),
            Event("orders/create", OrderState(lines, "pending", 0), None, _event_id(rng)),
        ],
        lines,
        None,
    )
