"""Connectors: connect a shop in one call (get the webhook URL to paste), or add an
outgoing webhook endpoint (get its signing secret, once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.roles import Permission
from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Conflict, InvalidInput
from partnerloop.integrations import conflicts as conflict_rules
from partnerloop.integrations import connectors, outbound
from partnerloop.integrations import mapping as mapping_engine
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import (
    ALL_KINDS,
    CRM_CONNECTORS,
    CRM_WEBHOOKS,
    CRMS,
    OUTBOUND,
    kinds,
)
from partnerloop.web.api.common import ERRORS, audit
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep

router = APIRouter(tags=["connectors"])

SETTINGS_DOC = (
    "Per kind: shopify {shop_domain}; woocommerce {store_url}; magento {base_url, client_id?, "
    "public_key?}; stripe {}; webhook {url, events?: [event types, default all]}; hubspot "
    "{timezone?: the account's, for its daily quota reset; deals?: on|off (orders as deals); "
    "deal_pipeline?; deal_stages?: open=<id>,won=<id>,lost=<id>; write_back?: [CRM "
    "properties written back to the shop customer]}; salesforce {instance_url, api_version?, "
    "object?: Contact|Lead, external_id_field?, allow_duplicates?}; pipedrive "
    "{company_domain?; deals?: on|off; order_id_field? (deal custom field key, needed with "
    "deals); write_back?; oauth_base_url? (OAuth apps' token host)}. Every kind also takes api_base_url (call the API at another "
    "host); shops take pull_every_minutes (scheduled pulls)."
)
CREDENTIALS_DOC = (
    "API credentials, stored encrypted: shopify {access_token}; woocommerce "
    "{consumer_key, consumer_secret}; magento {access_token}; stripe {api_key}; "
    "hubspot {access_token} (a private app's token) or {refresh_token, client_id, "
    "client_secret, access_token?, expires_at?} (an OAuth app: refreshed before expiry); "
    "salesforce {access_token, refresh_token?, client_id?, client_secret?}; pipedrive "
    "{api_token}, or {access_token} (an OAuth token used as is until a 401), or "
    "{refresh_token, client_id, client_secret, access_token?, expires_at?} (an OAuth app: "
    "renewed at settings.oauth_base_url, default https://oauth.pipedrive.com, before "
    "expiry and on a 401)."
)


class ConnectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    kind: str = Field(
        description="shopify, woocommerce, magento, stripe (shops); hubspot, salesforce, "
        "pipedrive (CRMs); webhook (outgoing webhooks)."
    )
    settings: dict[str, Any] = Field(default_factory=dict, description=SETTINGS_DOC)
    secret: str | None = Field(
        default=None,
        description="Shops: the webhook signing secret exactly as the shop shows it (Shopify "
        "app secret, WooCommerce webhook secret, Stripe whsec_..., Magento/Adobe client "
        "secret). webhook: a Standard Webhooks secret whsec_<base64>, or leave it out and "
        "one is made and shown once. hubspot: the app's client secret (checks its signed "
        "webhooks); pipedrive: user:password of its webhooks' HTTP Basic auth.",
    )
    credentials: dict[str, Any] = Field(default_factory=dict, description=CREDENTIALS_DOC)
    mapping: dict[str, Any] | None = Field(
        default=None,
        description="CRMs: the field mapping (default: the kind's). See PUT .../mapping.",
    )


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = Field(
        default=None,
        description="The new signing secret; the old one stays valid until the next rotation. "
        "Outgoing webhooks: leave it out to have one made (shown once).",
    )


class ConnectorOut(BaseModel):
    id: str
    program_id: str
    kind: str
    settings: dict[str, Any]
    webhook_url: str | None = Field(
        description="Shops: paste this into the shop's webhook settings. HubSpot and "
        "Pipedrive: the target URL of the CRM's webhook subscription, whose changes "
        "(settings.write_back) flow back to the shop's customer."
    )
    direction: str = Field(description="in (a shop's webhooks) or out (events we send).")
    status: str = Field(description="active, or disabled after too many failed deliveries.")
    disabled_reason: str | None
    has_credentials: bool
    rotating_secret: bool = Field(description="True while the previous secret is still accepted.")
    cursor: dict[str, Any] | None = Field(description="Where the last backfill got to.")
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(
        default=None,
        description="Outgoing webhooks: the signing secret, shown once (when made or rotated).",
    )


class ConnectorList(BaseModel):
    items: list[ConnectorOut]
    next_cursor: str | None = None


def connector_out(
    connector: Connector, *, public_url: str, secret: str | None = None
) -> ConnectorOut:
    outgoing = connector.kind in OUTBOUND
    return ConnectorOut(
        id=connector.id,
        program_id=connector.program_id,
        kind=connector.kind,
        settings=dict(connector.settings),
        # Where the vendor sends its webhooks: shops, and CRMs that report changes.
        webhook_url=connectors.webhook_url(public_url, connector.id)
        if not outgoing or connector.kind in CRM_WEBHOOKS
        else None,
        direction="out" if outgoing else "in",
        status=connector.status,
        disabled_reason=connector.disabled_reason,
        secret=secret if outgoing else None,
        has_credentials=connector.credentials_enc is not None,
        rotating_secret=connector.previous_secret_enc is not None,
        cursor=connector.cursor,
        created_at=connector.created_at,
        updated_at=connector.updated_at,
    )


@router.post("/connectors", status_code=201, response_model=ConnectorOut, responses=ERRORS)
def create_connector(
    body: ConnectorIn,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    response: Response,
    request: Request,
) -> ConnectorOut:
    """Connect a shop (answers the `webhook_url` to paste into it with the secret), or
    add an outgoing webhook endpoint (answers its signing `secret`, once)."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    principal.require_program(body.program_id)
    shop = ALL_KINDS.get(body.kind)
    if shop is None:
        raise InvalidInput(
            f"Unknown connector kind {body.kind!r}; known: {', '.join(kinds())}.",
            code="unknown_connector_kind",
            field="kind",
        )
    parsed = None
    if body.mapping is not None:
        if body.kind not in CRMS:
            raise InvalidInput(
                f"A {body.kind} connector has no field mapping.",
                code="no_field_mapping",
                field="mapping",
            )
        parsed = mapping_engine.parse_mapping(body.mapping)
        _check_key_field(body.kind, dict(body.settings), parsed)
    with transaction(runtime.sessions) as session:
        connector = connectors.create(
            session,
            runtime.cipher,
            shop=shop,
            program_id=body.program_id,
            settings=body.settings,
            secret=body.secret,
            credentials=body.credentials,
            now=utcnow(),
        )
        if parsed is not None:
            connector.mapping = mapping_engine.mapping_to_json(parsed)
        audit(
            session,
            principal,
            action="connector.created",
            subject_kind="connector",
            subject_id=connector.id,
            program_id=connector.program_id,
            details={"kind": connector.kind},
        )
        secret = connectors.secrets_of(runtime.cipher, connector)[0]
        out = connector_out(connector, public_url=runtime.settings.public_url, secret=secret)
    response.headers["Location"] = f"/api/v1/connectors/{out.id}"
    return out


@router.get("/connectors", response_model=ConnectorList, responses=ERRORS)
def list_connectors(
    principal: PrincipalDep, runtime: RuntimeDep, page: PageDep, program_id: str | None = None
) -> ConnectorList:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        rows = connectors.list_connectors(
            session,
            program_id=principal.visible_program(program_id),
            after=page.after,
            limit=page.limit,
        )
        items = [connector_out(row, public_url=runtime.settings.public_url) for row in rows]
    return ConnectorList(items=items, **page.render(rows))


@router.get("/connectors/{connector_id}", response_model=ConnectorOut, responses=ERRORS)
def get_connector(connector_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> ConnectorOut:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        return connector_out(row, public_url=runtime.settings.public_url)


@router.post("/connectors/{connector_id}/secret", response_model=ConnectorOut, responses=ERRORS)
def rotate_secret(
    connector_id: str, body: SecretIn, principal: PrincipalDep, runtime: RuntimeDep
) -> ConnectorOut:
    """Rotate the signing secret. Shops: both the new and the previous secret are
    accepted until the next rotation (shops switch over with a delay). Outgoing
    webhooks: deliveries carry signatures by both until the next rotation."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    with transaction(runtime.sessions) as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        secret = connectors.rotate_secret(
            session,
            runtime.cipher,
            kind=ALL_KINDS[row.kind],
            connector=row,
            secret=body.secret,
            now=utcnow(),
        )
        audit(
            session,
            principal,
            action="connector.secret_rotated",
            subject_kind="connector",
            subject_id=row.id,
            program_id=row.program_id,
        )
        return connector_out(row, public_url=runtime.settings.public_url, secret=secret)


@router.post("/connectors/{connector_id}/enable", response_model=ConnectorOut, responses=ERRORS)
def enable_connector(
    connector_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> ConnectorOut:
    """Re-enable an outgoing webhook endpoint that was disabled after failures. Its
    dead-lettered deliveries stay dead until replayed (POST /deliveries/{id}/replay)."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    with transaction(runtime.sessions) as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        outbound.enable(session, connector=row, now=utcnow())
        audit(
            session,
            principal,
            action="connector.enabled",
            subject_kind="connector",
            subject_id=row.id,
            program_id=row.program_id,
        )
        return connector_out(row, public_url=runtime.settings.public_url)


class MappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mapping: dict[str, Any] = Field(
        description="{version, fields: [{target, source, transforms: [...]}]}: see "
        "partnerloop/integrations/mapping.py for the transforms."
    )


class MappingOut(BaseModel):
    connector_id: str
    is_default: bool = Field(description="True while the connector uses its kind's default.")
    mapping: dict[str, Any]
    source_fields: dict[str, str] = Field(description="What a mapping can read, and what it is.")


def _mapping_out(row: Connector) -> MappingOut:
    current = outbound.mapping_of(row)
    return MappingOut(
        connector_id=row.id,
        is_default=row.mapping is None,
        mapping=mapping_engine.mapping_to_json(current),
        source_fields=dict(mapping_engine.SOURCE_FIELDS),
    )


def _check_key_field(kind: str, settings: dict[str, Any], parsed: Any) -> None:
    """A CRM mapping must fill the field contacts are matched by, or every sync
    would be a no-op."""
    crm = next(c for c in CRM_CONNECTORS if c.kind == kind)
    key = outbound.key_property_of(crm, settings)
    if key not in {rule.target for rule in parsed.fields}:
        raise InvalidInput(
            f"A {kind} mapping must fill {key!r}: contacts are matched by it.",
            code="missing_key_field",
            field="mapping.fields",
        )


def _crm(row: Connector) -> None:
    if row.kind not in CRMS:
        raise Conflict(
            f"A {row.kind} connector has no field mapping; CRMs ({', '.join(CRMS)}) do.",
            code="no_field_mapping",
        )


@router.get("/connectors/{connector_id}/mapping", response_model=MappingOut, responses=ERRORS)
def get_mapping(connector_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> MappingOut:
    """The CRM field mapping in use (the kind's default until one is saved)."""
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        _crm(row)
        return _mapping_out(row)


@router.put("/connectors/{connector_id}/mapping", response_model=MappingOut, responses=ERRORS)
def put_mapping(
    connector_id: str, body: MappingIn, principal: PrincipalDep, runtime: RuntimeDep
) -> MappingOut:
    """Replace the CRM field mapping. It is validated before it is saved (422 with the
    path of the first problem, e.g. mapping.fields[2].transforms[0].format) and its
    version must be newer than the current one."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    parsed = mapping_engine.parse_mapping(body.mapping)
    with transaction(runtime.sessions) as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        _crm(row)
        _check_key_field(row.kind, dict(row.settings), parsed)
        current = outbound.mapping_of(row)
        if row.mapping is not None and parsed.version <= current.version:
            raise Conflict(
                f"The saved mapping is version {current.version}; send a higher version.",
                code="stale_mapping_version",
                field="mapping.version",
            )
        row.mapping = mapping_engine.mapping_to_json(parsed)
        row.updated_at = utcnow()
        audit(
            session,
            principal,
            action="connector.mapping_set",
            subject_kind="connector",
            subject_id=row.id,
            program_id=row.program_id,
            details={"version": parsed.version},
        )
        return _mapping_out(row)


class ConflictsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conflicts: dict[str, Any] = Field(
        description='Per CRM field: {"policy": "source_priority"|"newest_wins"|'
        '"never_overwrite"|"merge_lists"|"always_overwrite", "priority": [...] (source_priority '
        "only)}. Fields without a policy are always overwritten. See "
        "partnerloop/integrations/conflicts.py."
    )


class ConflictsOut(BaseModel):
    connector_id: str
    conflicts: dict[str, Any]


class SyncDecisionOut(BaseModel):
    customer_id: str
    delivery_id: str
    field: str
    old: Any = Field(description="What the CRM had.")
    new: Any = Field(description="What was written (or kept).")
    written: bool
    policy: str
    reason: str
    decided_at: datetime


class SyncLog(BaseModel):
    items: list[SyncDecisionOut]


@router.get("/connectors/{connector_id}/conflicts", response_model=ConflictsOut, responses=ERRORS)
def get_conflicts(connector_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> ConflictsOut:
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        _crm(row)
        return ConflictsOut(connector_id=row.id, conflicts=dict(row.conflicts or {}))


@router.put("/connectors/{connector_id}/conflicts", response_model=ConflictsOut, responses=ERRORS)
def put_conflicts(
    connector_id: str, body: ConflictsIn, principal: PrincipalDep, runtime: RuntimeDep
) -> ConflictsOut:
    """Set the conflict policy per CRM field (validated; 422 names the path at fault).
    With policies set, each sync reads the CRM's values first and logs every decision."""
    principal.require(Scope.admin, Permission.MANAGE_CONNECTORS)
    parsed = conflict_rules.parse_policies(body.conflicts)
    with transaction(runtime.sessions) as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        _crm(row)
        row.conflicts = conflict_rules.policies_to_json(parsed) or None
        row.updated_at = utcnow()
        audit(
            session,
            principal,
            action="connector.conflicts_set",
            subject_kind="connector",
            subject_id=row.id,
            program_id=row.program_id,
        )
        return ConflictsOut(connector_id=row.id, conflicts=dict(row.conflicts or {}))


@router.get("/connectors/{connector_id}/sync-log", response_model=SyncLog, responses=ERRORS)
def get_sync_log(
    connector_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    customer_id: str | None = None,
) -> SyncLog:
    """The newest conflict decisions (200 at most): per field, what the CRM had, what
    was written or kept, and why."""
    principal.require(Scope.read)
    with runtime.sessions() as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        _crm(row)
        items = []
        for entry in outbound.sync_log(session, connector_id=row.id, customer_id=customer_id):
            old, new = outbound.read_log(runtime.cipher, entry)
            items.append(
                SyncDecisionOut(
                    customer_id=entry.customer_id,
                    delivery_id=entry.message_id,
                    field=entry.field,
                    old=old,
                    new=new,
                    written=entry.written,
                    policy=entry.policy,
                    reason=entry.reason,
                    decided_at=entry.decided_at,
                )
            )
    return SyncLog(items=items)
