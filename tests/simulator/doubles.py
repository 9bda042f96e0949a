"""Test doubles that break one invariant on purpose: the simulator must notice."""

from __future__ import annotations

import time

import httpx

from partnerloop.simulator.fake_crm import Contact, FakeHubSpot
from partnerloop.simulator.fake_shop import FakeShop
from partnerloop.simulator.plan import PlannedOrder


class DroppingShop(FakeShop):
    """Silently never sends the webhooks of its `drop`-th order (counting from 0),
    while recording it as sent, like a shop whose webhook got lost."""

    drop = 2

    def send_order(self, client: httpx.Client, order: PlannedOrder) -> None:
        if order.number - 1001 == self.drop:
            self.click(client, order)
            with self.stats.lock:
                self.stats.first_sent[order.order_id] = time.time()
            return
        super().send_order(client, order)


class LossyHubSpot(FakeHubSpot):
    """Answers every upsert with success but never keeps the first e-mail it
    was sent (nor any later write of it): a CRM that loses one contact."""

    lost: str | None = None

    def store(self, email: str, properties: dict[str, str]) -> Contact:
        key = email.strip().lower()
        if self.lost is None:
            self.lost = key
        if key == self.lost:
            return Contact("999999", {**properties, "email": key}, "", "", time.time())
        return super().store(email, properties)
