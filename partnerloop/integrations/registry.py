"""Every connector kind partnerloop ships, keyed by kind: shops (webhooks in) and
outgoing connectors (webhooks out; CRMs next). Adding a vendor means adding its
folder and one line here."""

from __future__ import annotations

from partnerloop.integrations.connectors import ConnectorKind
from partnerloop.integrations.magento.connector import CONNECTOR as MAGENTO
from partnerloop.integrations.shop import ShopConnector
from partnerloop.integrations.shopify.connector import CONNECTOR as SHOPIFY
from partnerloop.integrations.stripe.connector import CONNECTOR as STRIPE
from partnerloop.integrations.webhooks.connector import CONNECTOR as WEBHOOK
from partnerloop.integrations.woocommerce.connector import CONNECTOR as WOOCOMMERCE

SHOPS: dict[str, ShopConnector] = {
    shop.kind: shop for shop in (SHOPIFY, WOOCOMMERCE, MAGENTO, STRIPE)
}


OUTBOUND: dict[str, ConnectorKind] = {WEBHOOK.kind: WEBHOOK}
ALL_KINDS: dict[str, ConnectorKind] = {**SHOPS, **OUTBOUND}


def kinds() -> list[str]:
    return sorted(ALL_KINDS)
