"""Every connector kind partnerloop ships, keyed by kind: shops (webhooks in, and
CRM values written back), CRMs (customers out, their changes in by webhook) and
outgoing webhooks. Adding a vendor means adding its
folder and one line here."""

from __future__ import annotations

from partnerloop.integrations.connectors import ConnectorKind
from partnerloop.integrations.crm import CrmConnector
from partnerloop.integrations.crm_to_shop import DESTINATION_KIND as WRITE_BACK
from partnerloop.integrations.crm_to_shop import CrmWebhooks, PollingCrm
from partnerloop.integrations.hubspot.connector import CONNECTOR as HUBSPOT
from partnerloop.integrations.hubspot.webhooks import WEBHOOKS as HUBSPOT_WEBHOOKS
from partnerloop.integrations.magento.connector import CONNECTOR as MAGENTO
from partnerloop.integrations.pipedrive.connector import CONNECTOR as PIPEDRIVE
from partnerloop.integrations.pipedrive.webhooks import WEBHOOKS as PIPEDRIVE_WEBHOOKS
from partnerloop.integrations.salesforce.changes import POLLING as SALESFORCE_POLLING
from partnerloop.integrations.salesforce.connector import CONNECTOR as SALESFORCE
from partnerloop.integrations.shop import ShopConnector
from partnerloop.integrations.shopify.connector import CONNECTOR as SHOPIFY
from partnerloop.integrations.stripe.connector import CONNECTOR as STRIPE
from partnerloop.integrations.webhooks.connector import CONNECTOR as WEBHOOK
from partnerloop.integrations.woocommerce.connector import CONNECTOR as WOOCOMMERCE
from partnerloop.integrations.writeback import WritingShop

SHOPS: dict[str, ShopConnector] = {
    shop.kind: shop for shop in (SHOPIFY, WOOCOMMERCE, MAGENTO, STRIPE)
}

# Shops whose customer records the CRM's values are written back to.
WRITING_SHOPS: dict[str, WritingShop] = {
    shop.kind: shop for shop in (SHOPIFY, WOOCOMMERCE, MAGENTO)
}

CRM_CONNECTORS: tuple[CrmConnector, ...] = (HUBSPOT, SALESFORCE, PIPEDRIVE)
CRMS = tuple(crm.kind for crm in CRM_CONNECTORS)
# CRMs that tell partnerloop what changed by webhook (-> the shop write-back).
CRM_WEBHOOKS: dict[str, CrmWebhooks] = {
    HUBSPOT.kind: HUBSPOT_WEBHOOKS,
    PIPEDRIVE.kind: PIPEDRIVE_WEBHOOKS,
}
# CRMs without webhooks, polled for changes (-> the shop write-back).
POLLING_CRMS: dict[str, PollingCrm] = {SALESFORCE.kind: SALESFORCE_POLLING}
OUTBOUND: dict[str, ConnectorKind] = {WEBHOOK.kind: WEBHOOK}
OUTBOUND.update({crm.kind: crm for crm in CRM_CONNECTORS})
# Outbox destinations that are deliveries to a connector (the deliveries API, sync
# stats, /metrics): outgoing connectors, and the write-back to shops.
DELIVERY_KINDS: tuple[str, ...] = (*OUTBOUND, WRITE_BACK)
ALL_KINDS: dict[str, ConnectorKind] = {**SHOPS, **OUTBOUND}


def kinds() -> list[str]:
    return sorted(ALL_KINDS)
