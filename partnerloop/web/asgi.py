"""The app as an import string, for `partnerloop serve --workers N`: uvicorn
starts each worker process from a string, and each builds its own runtime
(engine, pools) from the same PARTNERLOOP_* environment, and sends its clicks
to the store `serve` started (PARTNERLOOP_STORE_SOCKET, set by serve)."""

from __future__ import annotations

import os
from pathlib import Path

from partnerloop.core import logs
from partnerloop.core.settings import Settings
from partnerloop.runtime import build_runtime
from partnerloop.web.app import PartnerloopApp, create_app
from partnerloop.web.store import STORE_SOCKET_ENV


def app_from_environment() -> PartnerloopApp:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    socket_path = os.environ.get(STORE_SOCKET_ENV)
    return create_app(
        build_runtime(settings),
        click_socket=Path(socket_path) if socket_path else None,
        settle_heap=True,
    )
