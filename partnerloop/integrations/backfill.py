"""Backfill and catch-up: pull historic orders through a shop's REST API.

Pulled orders go into the same inbox as webhooks and through the same worker
job, so an order seen both ways is one order (conversions are unique per
program and order id) and an older pulled state never overwrites a newer
webhook state (the shop's updated_at decides). Each page is committed with
the connector's cursor, so an interrupted backfill resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.integrations import connectors
from partnerloop.integrations.shop import PulledPage, ShopConnector, Unusable
from partnerloop.sync import service as sync

CURSOR_KEY = "backfill"


@dataclass
class BackfillResult:
    pages: int = 0
    stored: int = 0  # new inbox events
    duplicates: int = 0  # already in the inbox (seen by webhook or an earlier run)
    resumed: bool = False


Progress = Callable[[int, int | None], None]  # (items so far, total if known)


def run(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    shops: Mapping[str, ShopConnector],
    *,
    connector_id: str,
    since: datetime,
    client: httpx.Client,
    restart: bool = False,
    progress: Progress | None = None,
    cursor_key: str = CURSOR_KEY,
) -> BackfillResult:
    with sessions() as session:
        connector = connectors.get_or_raise(session, connector_id)
        config = connectors.config_of(session, cipher, connector)
        program_id = connector.program_id
        saved: dict[str, Any] = dict((connector.cursor or {}).get(cursor_key) or {})
    shop = shops.get(connector.kind)
    pull = getattr(shop, "pull", None)
    if shop is None or pull is None:
        raise InvalidInput(
            f"A {connector.kind} connector cannot pull orders.", code="backfill_unsupported"
        )
    result = BackfillResult()
    cursor: dict[str, Any] | None = None
    if not restart and saved.get("since") == since.isoformat() and saved.get("position"):
        cursor = saved["position"]
        result.resumed = True
    seen = int(saved.get("seen", 0)) if result.resumed else 0
    try:
        pages = pull(client, config=config, since=since, cursor=cursor)
        for page in pages:
            _store_page(
                sessions,
                cipher,
                connector_id=connector_id,
                program_id=program_id,
                since=since,
                page=page,
                result=result,
                seen=seen + len(page.items),
                cursor_key=cursor_key,
            )
            seen += len(page.items)
            if progress is not None:
                progress(seen, page.total)
    except Unusable as error:
        raise InvalidInput(str(error), code="backfill_failed") from None
    return result


def _store_page(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    *,
    connector_id: str,
    program_id: str,
    since: datetime,
    page: PulledPage,
    result: BackfillResult,
    seen: int,
    cursor_key: str,
) -> None:
    now = utcnow()
    with transaction(sessions) as session:
        for item in page.items:
            received = sync.receive(
                session,
                cipher,
                kind=connectors.INBOUND_KIND,
                source=connectors.source_of(connector_id),
                external_id=item.event_id[:512],
                topic=item.topic,
                payload=item.payload,
                program_id=program_id,
                now=now,
            )
            if received.created:
                result.stored += 1
            else:
                result.duplicates += 1
        connector = connectors.get_or_raise(session, connector_id)
        state = dict(connector.cursor or {})
        if page.done:
            state.pop(cursor_key, None)
            state[f"last_{cursor_key}"] = {
                "since": since.isoformat(),
                "finished_at": now.isoformat(),
            }
        else:
            state[cursor_key] = {"since": since.isoformat(), "position": page.cursor, "seen": seen}
        connectors.save_cursor(connector, state, now=now)
    result.pages += 1
