"""Imports every domain's models so Alembic sees the whole schema in one MetaData.

Core does not depend on the domains at import time: the imports happen when
Alembic asks, inside the function.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

MODEL_MODULES = (
    "partnerloop.programs.models",
    "partnerloop.access.models",
    "partnerloop.affiliates.models",
    "partnerloop.tracking.models",
    "partnerloop.orders.models",
    "partnerloop.commissions.models",
    "partnerloop.analytics.models",
    "partnerloop.sync.models",
    "partnerloop.privacy.models",
    "partnerloop.integrations.models",
    "partnerloop.audit.models",
)


def metadata() -> MetaData:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    from partnerloop.core.db import Base

    return Base.metadata
