"""Salesforce -> partnerloop: what changed on the records partnerloop upserted,
read by polling with a high-water mark (Salesforce sends no webhooks without an
Apex trigger or a Platform Event set up in the org).

`SELECT Id, <write_back fields>, SystemModstamp FROM <object>
 WHERE <external id field> != null AND SystemModstamp >= <since>
 ORDER BY SystemModstamp, Id LIMIT 2000` through the query resource, following
`nextRecordsUrl`. SystemModstamp is Salesforce's own clock (no skew with ours),
set on every change of a record, by a user or by automation. `>=` on whole
seconds re-reads the records of the boundary second: harmless, a value that did
not change is not written again (partnerloop.integrations.links.record_values).

Each record becomes a CrmChange of its Id (what the upsert told us, kept on
crm_links) with the write_back fields' values, at its SystemModstamp. A record
changed by partnerloop's own upsert comes back too; its write_back fields did
not change, so nothing is written to the shop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from partnerloop.core.clock import parse_datetime
from partnerloop.integrations.crm import ChangesRead, CrmChange, Verdict
from partnerloop.integrations.salesforce.connector import (
    _API_NAME,
    _as_ours,
    _Session,
    _Target,
    query,
)
from partnerloop.sync.worker import Outcome

PAGE_LIMIT = 2000  # the query resource's largest page


def soql_datetime(moment: datetime) -> str:
    """A SOQL dateTime literal, whole seconds in UTC (2026-11-24T09:30:00Z)."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def changes_since(
    client: httpx.Client,
    *,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    since: datetime,
    properties: Sequence[str],
    now: datetime,
) -> ChangesRead | Verdict:
    target = _Target.of(settings)
    if not credentials.get("access_token"):
        return Verdict(
            Outcome(
                ok=False,
                error="reconnect Salesforce: no access token (credentials.access_token)",
                permanent=True,
            )
        )
    # Names go into the SOQL text as they are: only API names, nothing else.
    names = [target.object, target.external_id_field, *properties]
    bad = next((n for n in names if len(n) > 80 or not _API_NAME.match(n)), None)
    if bad is not None:
        return Verdict(
            Outcome(
                ok=False,
                error=f"{bad!r} is not a Salesforce field API name: fix settings.write_back",
                permanent=True,
            )
        )
    fields = ", ".join(dict.fromkeys(["Id", *properties, "SystemModstamp"]))
    soql = (
        f"SELECT {fields} FROM {target.object} "  # noqa: S608 (API names checked above)
        f"WHERE {target.external_id_field} != null "
        f"AND SystemModstamp >= {soql_datetime(since)} "
        f"ORDER BY SystemModstamp, Id LIMIT {PAGE_LIMIT}"
    )
    session = _Session(client, target, credentials)
    rows = query(session, soql, now=now)
    if isinstance(rows, Verdict):
        return session.with_credentials(rows)
    changes: list[CrmChange] = []
    high_water: datetime | None = None
    for record in rows:
        change = _change_of(record, properties)
        if change is not None:
            changes.append(change)
            high_water = max(high_water or change.occurred_at, change.occurred_at)
    return ChangesRead(
        changes,
        high_water,
        dict(session.credentials) if session.refreshed else None,
    )


def _change_of(record: Mapping[str, Any], properties: Sequence[str]) -> CrmChange | None:
    # Salesforce answers with each field's own spelling; ours may differ in case.
    by_name = {name.lower(): value for name, value in record.items() if name != "attributes"}
    record_id, stamp = by_name.get("id"), by_name.get("systemmodstamp")
    if not isinstance(record_id, str) or not isinstance(stamp, str):
        return None
    try:
        occurred_at = parse_datetime(stamp)
    except ValueError:
        return None
    values: dict[str, str | None] = {}
    for name in properties:
        if name.lower() in by_name:
            value = _as_ours(by_name[name.lower()])
            values[name] = None if value is None or value == "" else str(value)
    return CrmChange(
        remote_id=record_id,
        values=values,
        occurred_at=occurred_at,
        event_id=f"{record_id}@{stamp}",
    )


class SalesforceChanges:
    """The polling capability (partnerloop.integrations.crm_to_shop.PollingCrm)."""

    def changes_since(
        self,
        client: httpx.Client,
        *,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        since: datetime,
        properties: Sequence[str],
        now: datetime,
    ) -> ChangesRead | Verdict:
        return changes_since(
            client,
            settings=settings,
            credentials=credentials,
            since=since,
            properties=properties,
            now=now,
        )


POLLING = SalesforceChanges()
