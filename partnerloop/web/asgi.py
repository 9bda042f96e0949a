"""The app as an import string, for `partnerloop serve --workers N`: uvicorn
starts each worker process from a string, and each builds its own runtime
(engine, pools, click writer) from the same PARTNERLOOP_* environment."""

from __future__ import annotations

from partnerloop.core import logs
from partnerloop.core.settings import Settings
from partnerloop.runtime import build_runtime
from partnerloop.web.app import PartnerloopApp, create_app


def app_from_environment() -> PartnerloopApp:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return create_app(build_runtime(settings))
