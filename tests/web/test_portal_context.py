"""Where the portal lives (its base) and its session cookie, without a server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from fastapi import Request, Response

from partnerloop.runtime import Runtime
from partnerloop.web.portal.context import base_of, set_session_cookie


def _request(state: dict[str, Any] | None) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    if state is not None:
        scope["state"] = state
    return Request(scope)


def test_the_base_is_the_one_the_host_layer_gives_else_the_programs_path() -> None:
    assert base_of(_request(None), "prg_1") == "/portal/prg_1"
    assert base_of(_request({}), "prg_1") == "/portal/prg_1"
    assert base_of(_request({"portal_base": ""}), "prg_1") == ""


def test_the_session_cookie_is_secure_on_https_and_scoped_to_the_base() -> None:
    def cookie(public_url: str, base: str) -> str:
        runtime = cast(Runtime, SimpleNamespace(settings=SimpleNamespace(public_url=public_url)))
        response = Response()
        set_session_cookie(response, runtime, base, "token")
        return response.headers["set-cookie"]

    on_https = cookie("https://partners.shop.example", "/portal/prg_1")
    on_domain = cookie("https://partners.shop.example", "")

    assert on_https.startswith("pl_portal=token;")
    assert "; Secure" in on_https
    assert "; HttpOnly" in on_https
    assert "; SameSite=lax" in on_https
    assert "; Path=/portal/prg_1" in on_https
    assert "; Path=/;" in on_domain or on_domain.endswith("; Path=/")


def test_the_brand_reaches_a_page_only_in_safe_shapes() -> None:
    from partnerloop.programs.models import Program
    from partnerloop.web.portal.context import brand_of

    program = Program(
        id="prg_1",
        name="Shop",
        portal_name=None,
        logo_url="javascript:alert(1)",
        brand_color="#12AB9f",
        accent_color="#12345",
        portal_texts={"welcome": {"en": "Hi", "nl": " "}, "broken": "not a mapping"},
    )

    brand = brand_of(program)

    assert brand.portal_name == "Shop"
    assert brand.logo_url is None
    assert (brand.brand_color, brand.accent_color) == ("#12AB9f", "#0f766e")
    assert brand.text("welcome", "nl") == "Hi"  # blank in Dutch: the English one
    assert brand.text("welcome", "en") == "Hi"
    assert brand.text("broken", "en") is None
