"""The shop write-back capability: what the CRM knows about a customer (segment,
lifecycle stage, tags) written to the shop's own customer record.

Each shop that supports it (Shopify tags, WooCommerce customer meta, Magento
customer attributes) provides `write_customer`; partnerloop.integrations.outbound
drives it from the outbox, one customer at a time, always with the customer's
current CRM values, so a retried or late delivery writes the newest state.

Values are written under a `crm` namespace (Shopify tag `crm:<property>:<value>`,
WooCommerce meta key `crm_<property>`, Magento attribute `crm_<property>`), and
only that namespace is touched: the merchant's own tags and fields stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

import httpx

from partnerloop.integrations.shop import ConnectorConfig
from partnerloop.sync.worker import Outcome

PREFIX = "crm"


class WritingShop(Protocol):
    kind: str

    def write_customer(
        self,
        client: httpx.Client,
        *,
        config: ConnectorConfig,
        customer_id: str,
        values: Mapping[str, str | None],
        now: datetime,
    ) -> Outcome: ...
