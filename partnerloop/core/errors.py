"""Typed errors that carry their HTTP status, a stable code and the field at fault.

Services raise these; the web layer turns them into RFC 9457 problem+json and
the CLI into a red line. The code is part of the public contract: clients
branch on it, so never rename one.
"""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, code: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field


class InvalidInput(DomainError):
    status = 422
    title = "Invalid input"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Unavailable(DomainError):
    """Could not be done just now (the store is restarting): the client should retry."""

    status = 503
    title = "Service unavailable"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
