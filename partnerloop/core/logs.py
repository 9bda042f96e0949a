"""Logging setup. Log lines name ids and counts, never personal data: no
e-mail, name or IP is ever passed to a logger (they are encrypted at rest and
only decrypted to answer an authorised API call)."""

from __future__ import annotations

import logging


def configure(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # uvicorn's access log prints every query string; click URLs can carry
    # sub-ids an affiliate filled with anything, so keep it off by default.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every URL it calls at INFO; postback URLs carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
