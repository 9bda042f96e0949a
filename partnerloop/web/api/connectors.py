"""Shop connectors: connect a shop in one call, get the webhook URL to paste."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from partnerloop.access.service import Scope
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import InvalidInput
from partnerloop.integrations import connectors
from partnerloop.integrations.models import Connector
from partnerloop.integrations.registry import SHOPS, kinds
from partnerloop.web.api.common import ERRORS
from partnerloop.web.deps import PageDep, PrincipalDep, RuntimeDep

router = APIRouter(tags=["connectors"])

SETTINGS_DOC = (
    "Per kind: shopify {shop_domain}; woocommerce {store_url}; magento {base_url}; "
    "stripe {}. Every kind also takes api_base_url, to point API calls at another host."
)
CREDENTIALS_DOC = (
    "API credentials for backfill, stored encrypted: shopify {access_token}; woocommerce "
    "{consumer_key, consumer_secret}; magento {access_token}; stripe {api_key}."
)


class ConnectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program_id: str
    kind: str = Field(description="shopify, woocommerce, magento or stripe.")
    settings: dict[str, Any] = Field(default_factory=dict, description=SETTINGS_DOC)
    secret: str = Field(
        description="The webhook signing secret exactly as the shop shows it (Shopify app "
        "secret, WooCommerce webhook secret, Stripe whsec_..., Magento/Adobe client secret)."
    )
    credentials: dict[str, Any] = Field(default_factory=dict, description=CREDENTIALS_DOC)


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(
        description="The new signing secret; the old one stays valid until the next rotation."
    )


class ConnectorOut(BaseModel):
    id: str
    program_id: str
    kind: str
    settings: dict[str, Any]
    webhook_url: str = Field(description="Paste this into the shop's webhook settings.")
    has_credentials: bool
    rotating_secret: bool = Field(description="True while the previous secret is still accepted.")
    cursor: dict[str, Any] | None = Field(description="Where the last backfill got to.")
    created_at: datetime
    updated_at: datetime


class ConnectorList(BaseModel):
    items: list[ConnectorOut]
    next_cursor: str | None = None


def connector_out(connector: Connector, *, public_url: str) -> ConnectorOut:
    return ConnectorOut(
        id=connector.id,
        program_id=connector.program_id,
        kind=connector.kind,
        settings=dict(connector.settings),
        webhook_url=connectors.webhook_url(public_url, connector.id),
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
    """Connect a shop. Answers the `webhook_url` to paste into the shop with the secret."""
    principal.require(Scope.admin)
    principal.require_program(body.program_id)
    shop = SHOPS.get(body.kind)
    if shop is None:
        raise InvalidInput(
            f"Unknown connector kind {body.kind!r}; known: {', '.join(kinds())}.",
            code="unknown_connector_kind",
            field="kind",
        )
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
        out = connector_out(connector, public_url=runtime.settings.public_url)
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
    """Rotate the webhook signing secret: both the new and the previous secret are
    accepted until the next rotation (shops switch over with a delay)."""
    principal.require(Scope.admin)
    with transaction(runtime.sessions) as session:
        row = connectors.get_or_raise(session, connector_id, program_id=principal.program_id)
        connectors.rotate_secret(
            session, runtime.cipher, connector=row, secret=body.secret, now=utcnow()
        )
        return connector_out(row, public_url=runtime.settings.public_url)
