"""Every shop connector partnerloop ships, keyed by kind. Adding a vendor means
adding its folder and one line here."""

from __future__ import annotations

from partnerloop.integrations.magento.connector import CONNECTOR as MAGENTO
from partnerloop.integrations.shop import ShopConnector
from partnerloop.integrations.shopify.connector import CONNECTOR as SHOPIFY
from partnerloop.integrations.stripe.connector import CONNECTOR as STRIPE
from partnerloop.integrations.woocommerce.connector import CONNECTOR as WOOCOMMERCE

SHOPS: dict[str, ShopConnector] = {
    shop.kind: shop for shop in (SHOPIFY, WOOCOMMERCE, MAGENTO, STRIPE)
}


def kinds() -> list[str]:
    return sorted(SHOPS)
