"""Server-rendered pages: Jinja2 templates (autoescaped) with the translator of
the browser's language in every template as `t`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from partnerloop.web.i18n import Translator, choose_language

TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )


def translator(request: Request, *, preferred: str | None = None) -> Translator:
    """The user's own language setting when given, else the browser's."""
    return Translator(choose_language(request.headers.get("accept-language"), preferred=preferred))


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    language: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page; `language` is the user's own setting (None: Accept-Language)."""
    t = translator(request, preferred=language)
    html = (
        environment()
        .get_template(template)
        .render(t=t, lang=t.language, path=request.url.path, **context)
    )
    response = HTMLResponse(html, status_code=status)
    # Pages carry per-user data and CSRF tokens: never cached, never framed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Language"] = t.language
    return response
