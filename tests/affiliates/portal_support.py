"""Helpers for portal tests (real HTTP and the browser): a program set up for
the portal, and affiliates who sign up and sign in through its pages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from partnerloop.core.db import transaction
from partnerloop.programs.models import Program
from tests.conftest import Server
from tests.factories.programs import create_program_api

PASSWORD = "portal password 1"
WEBSITE_FIELD: dict[str, Any] = {
    "name": "website",
    "label": {"en": "Your website", "nl": "Je website"},
    "type": "url",
    "required": True,
}
CHANNEL_FIELD: dict[str, Any] = {
    "name": "channel",
    "label": {"en": "Main channel", "nl": "Belangrijkste kanaal"},
    "type": "select",
    "required": False,
    "options": ["blog", "youtube", "newsletter"],
}


def portal_program(
    server: Server,
    *,
    approval: str = "auto",
    fields: list[dict[str, Any]] | None = None,
    allowed_domains: list[str] | None = None,
    **set_: Any,
) -> dict[str, Any]:
    """A new program (through the API) with the portal settings given."""
    with server.client() as api:
        program = create_program_api(
            api,
            name=f"Portal shop {secrets.token_hex(3)}",
            allowed_domains=allowed_domains or ["shop.example.com"],
        )
    with transaction(server.runtime.sessions) as db:
        row = db.get_one(Program, program["id"])
        row.signup_approval = approval
        row.signup_fields = fields if fields is not None else []
        for name, value in set_.items():
            setattr(row, name, value)
    return program


def browser(server: Server, *, language: str = "en") -> httpx.Client:
    """An httpx client like a browser: cookies, no API key, redirects not followed."""
    return httpx.Client(
        base_url=server.url,
        follow_redirects=False,
        timeout=30.0,
        headers={"Accept-Language": language},
    )


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert match, page.text
    return match.group(1)


def new_email() -> str:
    return f"portal-{secrets.token_hex(5)}@affiliates.example"


def sign_up(
    client: httpx.Client,
    program_id: str,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    name: str = "Pat Partner",
    answers: dict[str, str] | None = None,
    terms: bool = True,
) -> tuple[httpx.Response, str]:
    """Fill in and post the signup form; returns the answer and the e-mail used."""
    email = email or new_email()
    form = client.get(f"/portal/{program_id}/signup")
    assert form.status_code == 200, form.text
    data = {"csrf": csrf_of(form), "name": name, "email": email, "password": password}
    data.update({f"field_{key}": value for key, value in (answers or {}).items()})
    if terms:
        data["terms"] = "on"
    return client.post(f"/portal/{program_id}/signup", data=data), email


def sign_in(
    client: httpx.Client, program_id: str, email: str, password: str = PASSWORD
) -> httpx.Response:
    form = client.get(f"/portal/{program_id}/login")
    return client.post(
        f"/portal/{program_id}/login",
        data={"csrf": csrf_of(form), "email": email, "password": password},
    )


@contextmanager
def signed_up(
    server: Server, program_id: str, *, answers: dict[str, str] | None = None
) -> Iterator[tuple[httpx.Client, str]]:
    """`with signed_up(server, program_id) as (client, email):` a browser signed
    in as a new affiliate of the program."""
    with browser(server) as client:
        done, email = sign_up(client, program_id, answers=answers)
        assert (done.status_code, done.headers.get("location")) == (
            303,
            f"/portal/{program_id}/",
        ), done.text
        yield client, email


def api_csrf(client: httpx.Client, program_id: str) -> str:
    me = client.get(f"/portal/{program_id}/api/me")
    assert me.status_code == 200, me.text
    return str(me.json()["csrf_token"])
