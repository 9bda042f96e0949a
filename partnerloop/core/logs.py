"""Logging setup: one key=value line per event (structlog renders stdlib records).

Log lines name ids and counts, never personal data: no e-mail, name or IP is
ever passed to a logger (they are encrypted at rest and only decrypted to
answer an authorised API call).
"""

from __future__ import annotations

import logging

import structlog


def configure(level: str) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "logger", "event"], drop_missing=True
        ),
        foreign_pre_chain=shared,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # uvicorn's access log prints every query string; click URLs can carry
    # sub-ids an affiliate filled with anything, so keep it off by default.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every URL it calls at INFO; postback URLs carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
