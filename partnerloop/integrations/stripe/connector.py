"""stripe connector: being written (see partnerloop/integrations/shopify/connector.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from partnerloop.integrations.shop import Answer, ConnectorConfig, Delivery, ShopEvent


class _Connector:
    kind = "stripe"
    settings_fields: Mapping[str, bool] = {}
    credential_fields: Sequence[str] = ()

    def verify(
        self, request: Any, *, secrets: Sequence[str], config: ConnectorConfig, now: datetime
    ) -> Delivery | Answer:
        raise NotImplementedError

    def normalise(self, topic: str, payload: bytes, *, config: ConnectorConfig) -> list[ShopEvent]:
        raise NotImplementedError


CONNECTOR = _Connector()
