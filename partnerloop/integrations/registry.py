"""Every connector kind partnerloop ships, keyed by kind: shops (webhooks in) and
outgoing connectors (webhooks out; CRMs next). Adding a vendor means adding its
folder and one line here."""

from __future__ import annotations

from partnerloop.integrations.connectors import ConnectorKind
from partnerloop.integrations.crm import CrmConnector
from partnerloop.integrations.hubspot.connector import CONNECTOR as HUBSPOT
from partnerloop.integrations.magento.connector import CONNECTOR as MAGENTO
from partnerloop.integrations.pipedrive.connector import CONNECTOR as PIPEDRIVE
from partnerloop.integrations.salesforce.connector import CONNECTOR as SALESFORCE
from partnerloop.integrations.shop import ShopConnector
from partnerloop.integrations.shopify.connector import CONNECTOR as SHOPIFY
from partnerloop.integrations.stripe.connector import CONNECTOR as STRIPE
from partnerloop.integrations.webhooks.connector import CONNECTOR as WEBHOOK
from partnerloop.integrations.woocommerce.connector import CONNECTOR as WOOCOMMERCE

SHOPS: dict[str, ShopConnector] = {
    shop.kind: shop for shop in (SHOPIFY, WOOCOMMERCE, MAGENTO, STRIPE)
}


CRM_CONNECTORS: tuple[CrmConnector, ...] = (HUBSPOT, SALESFORCE, PIPEDRIVE)
CRMS = tuple(crm.kind for crm in CRM_CONNECTORS)
OUTBOUND: dict[str, ConnectorKind] = {WEBHOOK.kind: WEBHOOK}
OUTBOUND.update({crm.kind: crm for crm in CRM_CONNECTORS})
ALL_KINDS: dict[str, ConnectorKind] = {**SHOPS, **OUTBOUND}


def kinds() -> list[str]:
    return sorted(ALL_KINDS)
