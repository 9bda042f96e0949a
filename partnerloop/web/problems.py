"""RFC 9457 problem+json for every error the API returns.

Each problem carries a stable `code` clients can branch on and, where one
field is at fault, `field` (dotted path, e.g. commission.value).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from partnerloop.core.errors import DomainError

log = logging.getLogger("partnerloop.web")

PROBLEM_TYPE = "https://partnerloop.dev/problems/"
_PORTAL_API = re.compile(r"^/portal/(?:[^/]+/)?api/")
MEDIA_TYPE = "application/problem+json"


def problem(
    status: int, *, code: str, title: str, detail: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _field_path(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path


def _validation_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if is_page(request):
        fields = ", ".join(sorted({_field_path(e.get("loc", ())) for e in errors}))
        return _page_error(request, 422, f"Invalid input: {fields}.")
    if any(error.get("type") == "json_invalid" for error in errors):
        return problem(
            400,
            code="malformed_json",
            title="Malformed JSON",
            detail="The request body is not valid JSON.",
        )
    first = errors[0] if errors else {"loc": (), "msg": "invalid input", "type": "value_error"}
    field = _field_path(first.get("loc", ()))
    if first.get("type") == "missing":
        code, detail = "missing_field", f"{field} is required."
    elif field == "" and first.get("type") in ("model_attributes_type", "dict_type"):
        code, detail = "invalid_body", "The request body must be a JSON object."
    else:
        code, detail = "invalid_field", f"{field}: {first.get('msg', 'invalid value')}."
    return problem(
        422,
        code=code,
        title="Invalid input",
        detail=detail,
        field=field or None,
        errors=[
            {
                "field": _field_path(e.get("loc", ())),
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in errors
        ],
    )


def is_page(request: Request) -> bool:
    """Requests for HTML pages (admin and portal) get HTML errors, not problem+json."""
    path = request.url.path
    if _PORTAL_API.match(path):  # the portal's JSON for affiliates: problem+json
        return False
    return path == "/admin" or path.startswith(("/admin/", "/portal"))


def _page_error(request: Request, status: int, detail: str) -> Response:
    from partnerloop.web.pages import render  # pages import i18n; keep problems light

    return render(
        request, "error.html", status=status, status_code=status, detail=detail, home=_home(request)
    )


def _home(request: Request) -> str:
    """Where an error page's "back" link goes: the portal it came from (on a
    program's own domain, its root), else the admin start page."""
    state = request.scope.get("state") or {}
    if "portal_base" in state:
        return str(state["portal_base"]) or "/"
    parts = request.url.path.split("/")
    if len(parts) > 2 and parts[1] == "portal" and parts[2]:
        return f"/portal/{parts[2]}/"
    return "/portal" if request.url.path.startswith("/portal") else "/admin"


def _domain_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if is_page(request):
        return _page_error(request, exc.status, exc.detail)
    return problem(exc.status, code=exc.code, title=exc.title, detail=exc.detail, field=exc.field)


def _page_redirect(request: Request, exc: Exception) -> Response:
    from partnerloop.web.admin.guard import PageRedirect, redirect_response_headers

    assert isinstance(exc, PageRedirect)
    status, headers = redirect_response_headers(request, exc.location)
    return Response(status_code=status, headers=headers)


def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if is_page(request):
        return _page_error(request, exc.status_code, str(exc.detail))
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem(exc.status_code, code=code, title=str(exc.detail), detail=str(exc.detail))


def _unexpected_problem(request: Request, exc: Exception) -> JSONResponse:
    # Never leak internals; the log has the trace (and no personal data: we log
    # the exception type and path only).
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
    )
    return internal_error()


def internal_error() -> JSONResponse:
    return problem(
        500,
        code="internal_error",
        title="Internal error",
        detail="Something went wrong on our side.",
    )


def install(app: FastAPI) -> None:
    from partnerloop.web.admin.guard import PageRedirect

    app.add_exception_handler(PageRedirect, _page_redirect)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(DomainError, _domain_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(Exception, _unexpected_problem)
