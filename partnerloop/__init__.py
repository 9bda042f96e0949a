"""partnerloop: self-hosted affiliate platform closing the loop between clicks, shop orders and the CRM."""

__version__ = "0.1.0"
