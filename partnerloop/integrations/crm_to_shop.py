"""CRM -> shop: what the CRM learns about a customer (lifecycle stage, segment,
labels) goes back to the shop's customer record.

The path, each step durable before the next:
1. The CRM's signed webhook (HubSpot v3, Pipedrive v2 with Basic auth) is verified
   and stored in the inbox by web/hooks.py, like a shop's. A CRM without webhooks
   (Salesforce) is polled instead every `pull_every_minutes` from a high-water
   mark of the CRM's own change times (`poll_due`).
2. `make_handler` (a worker job, in one transaction): each change names the CRM's
   id for a contact; partnerloop knows it from its own upserts (crm_links). The
   properties the connector's `write_back` setting lists are kept on that link
   where they are newer than what is held (late and out-of-order events lose),
   and when anything changed, a write-back message is queued for each shop the
   customer bought through.
3. `make_deliverer` (the delivery engine, retries, dead letters, replay): under
   a per-customer lease it reads the customer's current CRM values and writes
   them to the shop (partnerloop.integrations.writeback), so a late or repeated
   delivery writes the newest state.

A CRM contact partnerloop never sent (not a customer of the program) is ignored.
"""

from __future__ import annotations

import logging
import secrets as random_secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import transaction
from partnerloop.core.errors import DomainError
from partnerloop.integrations import connectors, links, scheduled
from partnerloop.integrations.crm import ChangesRead, CrmChange, Verdict
from partnerloop.integrations.models import Connector, CrmLink
from partnerloop.integrations.shop import ConnectorConfig, Delivery, Unusable, WebhookRequest
from partnerloop.integrations.writeback import WritingShop
from partnerloop.orders.models import Conversion, Customer
from partnerloop.sync import service as sync
from partnerloop.sync.models import InboundEvent, OutboxMessage
from partnerloop.sync.worker import (
    InboundHandler,
    Outcome,
    RejectEvent,
    RemoteDeliverer,
    per_pass,
)

log = logging.getLogger("partnerloop.crm_to_shop")

INBOUND_KIND = "crm"
DESTINATION_KIND = "shop_writeback"
TOPIC = "customer.crm_changed"
WRITE_BACK_SETTING = "write_back"


class PollingCrm(Protocol):
    """What a CRM read by polling provides."""

    def changes_since(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        since: datetime,
        properties: Sequence[str],
        now: datetime,
    ) -> ChangesRead | Verdict: ...


class CrmWebhooks(Protocol):
    """What a CRM that sends webhooks provides (one module per vendor)."""

    def verify(
        self, request: WebhookRequest, *, secrets: Sequence[str], url: str, now: datetime
    ) -> Delivery: ...

    def parse(self, body: bytes) -> list[CrmChange]: ...


def write_back_properties(connector: Connector) -> list[str]:
    return [str(name) for name in connector.settings.get(WRITE_BACK_SETTING) or ()]


def make_handler(
    cipher: FieldCipher,
    webhooks: Mapping[str, CrmWebhooks],
    shops: Mapping[str, WritingShop],
) -> InboundHandler:
    def handle(session: Session, event: InboundEvent, payload: str, now: datetime) -> None:
        connector_id = connectors.connector_id_of(event.source)
        if connector_id is None or event.program_id is None:
            raise RejectEvent(f"not a connector event: {event.source}")
        try:
            connector = connectors.get_or_raise(session, connector_id)
        except DomainError:
            raise RejectEvent(f"connector {connector_id} no longer exists") from None
        parser = webhooks.get(connector.kind)
        if parser is None:
            raise RejectEvent(f"no CRM webhooks of kind {connector.kind!r} in this version")
        try:
            changes = parser.parse(payload.encode())
        except Unusable as error:
            raise RejectEvent(str(error)) from None
        record_changes(
            session,
            cipher,
            connector=connector,
            changes=changes,
            shops=shops,
            event_id=event.id,
            now=now,
        )

    return handle


def record_changes(
    session: Session,
    cipher: FieldCipher,
    *,
    connector: Connector,
    changes: Sequence[CrmChange],
    shops: Mapping[str, WritingShop],
    event_id: str,
    now: datetime,
) -> int:
    """Keep the changes of the properties written back; queue the shop writes.
    Returns how many customers changed."""
    wanted = write_back_properties(connector)
    changed: dict[str, datetime] = {}
    for change in changes:
        values = {name: value for name, value in change.values.items() if name in wanted}
        if not values:
            continue
        link = links.by_remote_id(session, connector.id, change.remote_id)
        if link is None:
            continue  # a contact partnerloop never sent: not a customer of this program
        if links.record_values(cipher, link, values, occurred_at=change.occurred_at):
            changed[link.customer_id] = max(
                change.occurred_at, changed.get(link.customer_id, change.occurred_at)
            )
    for customer_id, occurred_at in changed.items():
        for shop_id in _shops_of(session, customer_id, shops):
            sync.enqueue(
                session,
                cipher,
                destination_kind=DESTINATION_KIND,
                destination_id=shop_id,
                topic=TOPIC,
                payload={"customer_id": customer_id, "program_id": connector.program_id},
                # Per stored event: a replayed webhook queues nothing twice.
                idempotency_key=f"{event_id}:{customer_id}",
                program_id=connector.program_id,
                now=now,
                occurred_at=occurred_at,
            )
    return len(changed)


def _shops_of(session: Session, customer_id: str, shops: Mapping[str, WritingShop]) -> list[str]:
    """The shop connectors the customer bought through that can be written to."""
    return list(
        session.scalars(
            select(Connector.id)
            .where(
                Connector.id.in_(
                    select(Conversion.connector_id).where(Conversion.customer_id == customer_id)
                ),
                Connector.kind.in_(list(shops)),
            )
            .order_by(Connector.id)
        )
    )


def make_deliverer(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    shops: Mapping[str, WritingShop],
    *,
    client_factory: Callable[[], httpx.Client],
    clock: Callable[[], datetime] = utcnow,
) -> RemoteDeliverer:
    client = client_factory()

    def shop_of(connector_id: str) -> tuple[WritingShop, ConnectorConfig] | Outcome:
        with sessions() as session:
            connector = session.get(Connector, connector_id)
            if connector is None:
                return Outcome(ok=False, error="the shop connector was deleted", permanent=True)
            shop = shops.get(connector.kind)
            if shop is None:
                return Outcome(
                    ok=False,
                    error=f"a {connector.kind} shop cannot be written back to",
                    permanent=True,
                )
            return shop, connectors.config_of(session, cipher, connector)

    def deliver(message: OutboxMessage, payload: dict[str, Any]) -> Outcome:
        now = clock()
        customer_id = str(payload.get("customer_id", ""))
        connector_id = message.destination_id
        # Read once per pass of the worker over its claimed messages (three reads per
        # message before); a change made meanwhile counts from the next pass.
        found = per_pass((DESTINATION_KIND, connector_id), lambda: shop_of(connector_id))
        if isinstance(found, Outcome):
            return found
        shop, config = found
        with sessions() as session:
            customer = session.get(Customer, customer_id)
            if customer is None or not customer.external_id:
                return Outcome(ok=True, response="the customer has no account at the shop")
            shop_customer_id = customer.external_id
        token = random_secrets.token_hex(8)
        if not links.lease(sessions, connector_id, customer_id, token, now):
            return Outcome(
                ok=False,
                error="another write-back of this customer is in flight",
                retry_after=links.RETRY_SECONDS,
                deferred=True,
            )
        try:
            # Read under the lease: the newest values, whatever order messages came in.
            with sessions() as session:
                rows = session.scalars(
                    select(CrmLink).where(
                        CrmLink.customer_id == customer_id, CrmLink.crm_values_enc.is_not(None)
                    )
                )
                values = links.merged_values(cipher, rows)
            return shop.write_customer(
                client, config=config, customer_id=shop_customer_id, values=values, now=now
            )
        finally:
            links.release(sessions, connector_id, customer_id, token, None)

    return deliver


def poll_due(
    sessions: sessionmaker[Session],
    cipher: FieldCipher,
    pollers: Mapping[str, PollingCrm],
    shops: Mapping[str, WritingShop],
    *,
    client_factory: Callable[[], httpx.Client],
    now: datetime,
) -> int:
    """Poll every CRM connector that is due (`pull_every_minutes` and `write_back`
    set); returns how many customers changed. The claim is the scheduled pulls'
    compare-and-set, so one worker polls a connector when several run."""
    claimed: list[tuple[str, datetime]] = []
    with transaction(sessions) as session:
        for connector in session.scalars(
            select(Connector).where(Connector.kind.in_(list(pollers))).order_by(Connector.id)
        ):
            if scheduled.SETTING not in connector.settings or not write_back_properties(connector):
                continue
            since = scheduled.claim(session, connector, now)
            if since is not None:
                claimed.append((connector.id, since))
    changed = 0
    for connector_id, since in claimed:
        with sessions() as session:
            connector = session.get_one(Connector, connector_id)
            config = connectors.config_of(session, cipher, connector)
            wanted = write_back_properties(connector)
            poller = pollers[connector.kind]
        with client_factory() as client:
            read = poller.changes_since(
                client,
                settings=config.settings,
                credentials=config.credentials,
                since=since,
                properties=wanted,
                now=now,
            )
        with transaction(sessions) as session:
            connector = session.get_one(Connector, connector_id)
            credentials = read.credentials
            if credentials is not None:
                connectors.save_credentials(cipher, connector, credentials, now=now)
            if isinstance(read, Verdict):
                # The high-water mark stays: the next poll reads this range again.
                log.warning("polling %s for changes failed: %s", connector_id, read.outcome.error)
                continue
            changed += record_changes(
                session,
                cipher,
                connector=connector,
                changes=read.changes,
                shops=shops,
                # One poll is one event (its changes and queueing commit together).
                event_id=f"poll:{connector_id}:{now.isoformat()}",
                now=now,
            )
            if read.high_water is not None:
                state = dict(connector.cursor or {})
                state[scheduled.SINCE_KEY] = read.high_water.isoformat()
                connector.cursor = state
    return changed
