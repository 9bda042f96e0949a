"""The CRM capability: what HubSpot, Salesforce and Pipedrive connectors provide.

A CRM connector turns contacts (the mapped properties of our customers, see
partnerloop.integrations.mapping) into the vendor's upsert calls and judges the
answer: delivered, retry (when: Retry-After, a quota's reset), or dead (with
the vendor's message). It does no database work; partnerloop.integrations.outbound
drives it from the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from partnerloop.sync.worker import Outcome


@dataclass(frozen=True)
class Verdict:
    """A delivery's outcome, plus what the connector learnt on the way."""

    outcome: Outcome
    # The vendor's quota for the whole account is used up until then: pause the connector.
    pause_until: datetime | None = None
    # New credentials (an OAuth token refreshed on the way): store them.
    credentials: Mapping[str, str] | None = None
    # The CRM's own ids of the contacts, by key (lower-cased), when it says them.
    remote_ids: Mapping[str, str] | None = None
    # In a batch the CRM accepted in part: the contacts it refused for good, by key
    # (lower-cased), with the vendor's message. The rest of the batch was accepted.
    rejected: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CrmRecord:
    """A contact as the CRM holds it now (for conflict policies)."""

    values: Mapping[str, Any]
    updated_at: datetime | None


@dataclass(frozen=True)
class ContactsRead:
    """What a read of the CRM's current contacts found, by key (lower-cased)."""

    records: dict[str, CrmRecord]
    # An OAuth token renewed on the way: store it, and send the upsert with it.
    credentials: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CrmChange:
    """What a CRM says changed on one of its contacts (a webhook event or a polled
    record): the CRM's id for the contact, the properties it names with their new
    values (None: cleared), and when the change happened at the CRM."""

    remote_id: str
    values: Mapping[str, str | None]
    occurred_at: datetime
    event_id: str


@dataclass(frozen=True)
class ChangesRead:
    """What a poll of a CRM found (for CRMs without webhooks, e.g. Salesforce)."""

    changes: list[CrmChange]
    # Where the next poll starts: the CRM's newest change time seen (None: nothing new).
    high_water: datetime | None
    credentials: Mapping[str, str] | None = None  # renewed on the way: store them


@dataclass(frozen=True)
class DealFacts:
    """An order as a CRM deal (HubSpot deal, Pipedrive deal), when the connector's
    `deals` setting is on. Upserted by the order id, so a retry or a later state
    of the order (paid, refunded, cancelled) updates the same deal."""

    order_id: str  # the shop's order id: the deal's key at the CRM
    name: str  # e.g. "Order #1001"
    amount_minor: int  # what the customer paid less refunds, in minor units
    currency: str
    stage: str  # open (placed, not paid) | won (paid) | lost (cancelled or fully refunded)
    ordered_at: datetime
    contact_remote_id: str | None  # the CRM's id of the customer's contact, to associate
    affiliate: str | None  # the referring affiliate's name, or None


class DealsCrm(Protocol):
    """A CRM that records orders as deals."""

    def upsert_deals(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        deals: Sequence[DealFacts],
        now: datetime,
    ) -> Verdict: ...  # remote_ids and rejected keyed by order_id


class CrmConnector(Protocol):
    kind: str
    settings_fields: Mapping[str, bool]
    credential_fields: Sequence[str]
    # The mapped property that identifies a contact at the vendor (e.g. "email").
    key_property: str

    def check_secret(self, secret: str | None) -> str: ...

    def upsert_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        contacts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> Verdict: ...


class ReadingCrm(CrmConnector, Protocol):
    """A CRM whose current values partnerloop can read, so per-field conflict
    policies apply (partnerloop.integrations.conflicts)."""

    def read_contacts(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        keys: Sequence[str],
        properties: Sequence[str],
        now: datetime,
    ) -> ContactsRead | Verdict: ...
