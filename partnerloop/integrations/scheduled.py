"""Scheduled pulls: catch-up for shops that send no events (Magento Open Source
has no webhooks) or whose webhooks can be lost (WooCommerce disables a webhook
after a few failed deliveries and never retries).

A connector with the setting `pull_every_minutes` is pulled that often, from
where the last successful pull started (less an overlap for clock skew and
orders changed during the pull). Pulled orders go through the inbox like
webhooks, so overlaps and orders seen both ways count once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import parse_datetime
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.integrations import backfill
from partnerloop.integrations.models import Connector
from partnerloop.integrations.shop import ShopConnector

log = logging.getLogger("partnerloop.pull")

SETTING = "pull_every_minutes"
CURSOR_KEY = "scheduled"
SINCE_KEY = "pull_since"  # in the connector's cursor: where the next pull starts
OVERLAP = timedelta(minutes=10)
# A new connector's first pull also covers the day before it was connected.
FIRST_PULL_LOOKBACK = timedelta(days=1)


def claim(session: Session, connector: Connector, now: datetime) -> datetime | None:
    """Take this connector's pull if it is due; returns the `since` to pull from.

    The compare-and-set on updated_at makes one worker win when several share
    the database; the others skip it."""
    minutes = int(connector.settings[SETTING])
    state = dict(connector.cursor or {})
    due_at = state.get("next_pull_at")
    if due_at and parse_datetime(due_at) > now:
        return None
    since_text = state.get(SINCE_KEY)
    since = parse_datetime(since_text) if since_text else connector.created_at - FIRST_PULL_LOOKBACK
    state["next_pull_at"] = (now + timedelta(minutes=minutes)).isoformat()
    won: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Connector)
        .where(Connector.id == connector.id, Connector.updated_at == connector.updated_at)
        .values(cursor=state, updated_at=now)
    )
    return since if won.rowcount == 1 else None


def pull_due(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    shops: Mapping[str, ShopConnector],
    *,
    client_factory: Callable[[], httpx.Client],
    now: datetime,
) -> int:
    """Pull every connector that is due; returns how many new inbox events were stored."""
    claimed: list[tuple[str, datetime]] = []
    with transaction(sessions) as session:
        for connector in session.scalars(select(Connector).order_by(Connector.id)):
            if SETTING not in (connector.settings or {}):
                continue
            if getattr(shops.get(connector.kind), "pull", None) is None:
                continue
            since = claim(session, connector, now)
            if since is not None:
                claimed.append((connector.id, since))
    stored = 0
    for connector_id, since in claimed:
        try:
            with client_factory() as client:
                result = backfill.run(
                    sessions,
                    cipher,
                    shops,
                    connector_id=connector_id,
                    since=since,
                    client=client,
                    restart=True,
                    cursor_key=CURSOR_KEY,
                )
        except Exception as error:
            # pull_since stays where it was: the next pull covers this range again.
            log.warning("scheduled pull of %s failed: %s", connector_id, error)
            continue
        stored += result.stored
        with transaction(sessions) as session:
            connector = session.get_one(Connector, connector_id)
            state = dict(connector.cursor or {})
            state[SINCE_KEY] = (now - OVERLAP).isoformat()
            connector.cursor = state
    return stored
