"""The affiliate portal over real HTTP: signup with the program's own questions,
automatic and manual approval, login, logout, throttling, CSRF, sessions bound
to one program, white label and language."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import delete, select, text

from partnerloop.access.models import LoginFailure, PortalSession
from partnerloop.affiliates import portal as affiliate_portal
from partnerloop.affiliates import service as affiliates
from partnerloop.affiliates.models import Affiliate, Enrollment
from partnerloop.audit.models import AuditEntry
from partnerloop.core.crypto import hash_token
from partnerloop.core.db import transaction
from partnerloop.web.app import create_app
from partnerloop.web.redirect import Receive, Scope, Send
from tests.affiliates.portal_support import (
    CHANNEL_FIELD,
    PASSWORD,
    WEBSITE_FIELD,
    browser,
    csrf_of,
    new_email,
    portal_program,
    sign_in,
    sign_up,
    signed_up,
)
from tests.conftest import Server


@pytest.fixture(autouse=True)
def _forget_address_failures(server: Server) -> Iterator[None]:
    """Every test client is 127.0.0.1: the failures a test makes on purpose
    must not count against the next test's address (20 per 15 minutes)."""
    yield
    with transaction(server.runtime.sessions) as db:
        db.execute(delete(LoginFailure).where(LoginFailure.key.startswith("address:")))


def affiliate_of(server: Server, email: str) -> Affiliate | None:
    with server.runtime.sessions() as db:
        found = affiliates.find_by_email(db, server.runtime.cipher, email)
        if found is not None:
            db.expunge(found)
        return found


def enrollment_of(server: Server, program_id: str, affiliate_id: str) -> Enrollment:
    with server.runtime.sessions() as db:
        row = affiliates.enrollment_of(db, program_id=program_id, affiliate_id=affiliate_id)
        assert row is not None
        db.expunge(row)
        return row


def test_signup_with_custom_fields_stores_the_answers_encrypted_and_approves_at_once(
    server: Server,
) -> None:
    program = portal_program(server, approval="auto", fields=[WEBSITE_FIELD, CHANNEL_FIELD])
    pid = program["id"]
    with browser(server) as client:
        form = client.get(f"/portal/{pid}/signup")
        done, email = sign_up(
            client, pid, answers={"website": "https://pat-blogs.example/", "channel": "youtube"}
        )
        cookie = done.headers["set-cookie"]
        dashboard = client.get(f"/portal/{pid}/")

    assert form.status_code == 200
    assert 'name="field_website"' in form.text
    assert "Your website" in form.text
    assert (done.status_code, done.headers["location"]) == (303, f"/portal/{pid}/")
    assert "pl_portal=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert f"Path=/portal/{pid}" in cookie
    assert "Secure" not in cookie  # the tests' public URL is http
    assert dashboard.status_code == 200
    assert "Dashboard" in dashboard.text
    affiliate = affiliate_of(server, email)
    assert affiliate is not None
    assert affiliate.status == "approved"
    assert affiliate.password_hash is not None
    assert affiliate.password_hash.startswith("$argon2id$")
    enrollment = enrollment_of(server, pid, affiliate.id)
    raw = enrollment.signup_answers_enc
    assert raw is not None
    assert "pat-blogs" not in raw
    assert "youtube" not in raw
    assert json.loads(server.runtime.cipher.decrypt(raw, field=affiliate_portal.ANSWERS_FIELD)) == {
        "website": "https://pat-blogs.example/",
        "channel": "youtube",
    }
    with server.runtime.sessions() as db:
        actions = list(
            db.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.subject_id == affiliate.id, AuditEntry.program_id == pid
                )
            )
        )
    assert actions == ["affiliate.signed_up"]


def test_a_missing_required_answer_names_the_field_and_creates_nothing(server: Server) -> None:
    program = portal_program(server, approval="auto", fields=[WEBSITE_FIELD, CHANNEL_FIELD])
    pid = program["id"]
    with browser(server) as client:
        missing, email = sign_up(client, pid, answers={"channel": "blog"})
        not_a_url, _ = sign_up(client, pid, answers={"website": "javascript:alert(1)"})
        bad_option, _ = sign_up(
            client, pid, answers={"website": "https://a.example", "channel": "tv"}
        )
        no_terms, _ = sign_up(client, pid, answers={"website": "https://a.example"}, terms=False)
        short_password, _ = sign_up(
            client, pid, answers={"website": "https://a.example"}, password="short"
        )
        email_password, _ = sign_up(
            client,
            pid,
            email="same@affiliates.example",
            password="same@affiliates.example",
            answers={"website": "https://a.example"},
        )

    assert missing.status_code == 422
    assert "Your website is required." in missing.text
    assert 'id="error-website"' in missing.text
    assert (
        'value="blog" selected' in missing.text or "<option selected>blog</option>" in missing.text
    )
    assert 'value="' + email + '"' in missing.text  # what was typed comes back
    assert PASSWORD not in missing.text  # the password never does
    assert not_a_url.status_code == 422
    assert "Your website must be a web address" in not_a_url.text
    assert bad_option.status_code == 422
    assert "Main channel: choose one of the options." in bad_option.text
    assert no_terms.status_code == 422
    assert "Accept the terms to sign up." in no_terms.text
    assert short_password.status_code == 422
    assert "at least 10 characters" in short_password.text
    assert email_password.status_code == 422
    assert "must not be your e-mail address" in email_password.text
    assert affiliate_of(server, email) is None
    assert affiliate_of(server, "same@affiliates.example") is None


def test_manual_approval_leaves_the_affiliate_pending_with_a_status_page_only(
    server: Server,
) -> None:
    program = portal_program(server, approval="manual")
    pid = program["id"]
    with signed_up(server, pid) as (client, email):
        home = client.get(f"/portal/{pid}/")
        links = client.get(f"/portal/{pid}/links")
        coupons = client.get(f"/portal/{pid}/coupons")
        payouts = client.get(f"/portal/{pid}/payouts")
        create = client.post(
            f"/portal/{pid}/links",
            data={"csrf": csrf_of(home), "destination_url": "https://shop.example.com/p/1"},
        )
        api_links = client.get(f"/portal/{pid}/api/links")
        me = client.get(f"/portal/{pid}/api/me")

    affiliate = affiliate_of(server, email)
    assert affiliate is not None
    assert affiliate.status == "pending"
    assert home.status_code == 200
    assert "The program reviews your application" in home.text
    assert 'action="/portal/' + pid + '/links"' not in home.text
    assert f'href="/portal/{pid}/links"' not in home.text  # no menu to features
    for page in (links, coupons, payouts, create):
        assert page.status_code == 403
        assert "The program reviews your application" in page.text
        assert 'name="destination_url"' not in page.text
    assert api_links.status_code == 403
    assert me.status_code == 200
    assert me.json()["status"] == "pending"
    with server.runtime.sessions() as db:
        count = db.scalar(
            text("SELECT count(*) FROM links WHERE affiliate_id = :a"), {"a": affiliate.id}
        )
    assert count == 0


def test_sign_in_and_out(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (_, email):
        pass
    with browser(server) as client:
        before = client.get(f"/portal/{pid}/")
        wrong = sign_in(client, pid, email, "not the password")
        unknown = sign_in(client, pid, new_email(), PASSWORD)
        right = sign_in(client, pid, email.upper())
        home = client.get(f"/portal/{pid}/")
        login_again = client.get(f"/portal/{pid}/login")
        token = client.cookies.get("pl_portal")
        out = client.post(f"/portal/{pid}/logout", data={"csrf": csrf_of(home)})
        after = client.get(f"/portal/{pid}/")

    assert (before.status_code, before.headers["location"]) == (303, f"/portal/{pid}/login")
    assert wrong.status_code == 401
    assert "The e-mail or the password is wrong." in wrong.text
    assert unknown.status_code == 401
    assert unknown.text.count("The e-mail or the password is wrong.") == 1
    assert (right.status_code, right.headers["location"]) == (303, f"/portal/{pid}/")
    assert home.status_code == 200
    assert "Signed in as Pat Partner" in home.text
    assert (login_again.status_code, login_again.headers["location"]) == (303, f"/portal/{pid}/")
    assert (out.status_code, out.headers["location"]) == (303, f"/portal/{pid}/login")
    assert (after.status_code, after.headers["location"]) == (303, f"/portal/{pid}/login")
    assert token is not None
    with server.runtime.sessions() as db:
        row = db.get(PortalSession, hash_token(token))
        assert row is not None
        assert row.ended_at is not None
        assert row.program_id == pid


def test_forged_posts_are_refused_and_change_nothing(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    email = new_email()
    with browser(server) as client:
        client.get(f"/portal/{pid}/signup")  # the browser has the CSRF cookie...
        forged_signup = client.post(  # ...but the forged form has no token
            f"/portal/{pid}/signup",
            data={"name": "Eve", "email": email, "password": PASSWORD, "terms": "on"},
        )
    with browser(server) as other:
        wrong_token = other.post(
            f"/portal/{pid}/signup",
            data={
                "csrf": "guess",
                "name": "Eve",
                "email": email,
                "password": PASSWORD,
                "terms": "on",
            },
        )
    with signed_up(server, pid) as (client, known):
        forged_login = client.post(
            f"/portal/{pid}/login", data={"email": known, "password": PASSWORD}
        )
        forged_link = client.post(
            f"/portal/{pid}/links", data={"destination_url": "https://shop.example.com/x"}
        )
        forged_payout = client.post(
            f"/portal/{pid}/payouts",
            data={"method": "paypal", "paypal_email": "eve@evil.example", "csrf": "nope"},
        )
        forged_logout = client.post(f"/portal/{pid}/logout", data={})
        still_in = client.get(f"/portal/{pid}/")
        forged_api = client.post(
            f"/portal/{pid}/api/links", json={"destination_url": "https://shop.example.com/y"}
        )

    assert forged_signup.status_code == 403
    assert "out of date" in forged_signup.text
    assert wrong_token.status_code == 403
    assert affiliate_of(server, email) is None
    assert forged_login.status_code == 403
    assert forged_link.status_code == 403
    assert forged_payout.status_code == 403
    assert forged_logout.status_code == 403
    assert still_in.status_code == 200
    assert forged_api.status_code == 403
    affiliate = affiliate_of(server, known)
    assert affiliate is not None
    assert affiliate.payout_details_enc is None
    with server.runtime.sessions() as db:
        links = db.scalar(
            text("SELECT count(*) FROM links WHERE affiliate_id = :a"), {"a": affiliate.id}
        )
    assert links == 0


def test_failed_logins_are_throttled_per_account(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (_, email):
        pass
    with browser(server) as attacker:
        failures = [sign_in(attacker, pid, email, f"wrong password {n}") for n in range(5)]
        blocked = sign_in(attacker, pid, email)  # even the right password waits now
    with browser(server) as owner:
        also_blocked = sign_in(owner, pid, email)

    assert [r.status_code for r in failures] == [401] * 5
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 900
    assert "Too many failed attempts" in blocked.text
    assert also_blocked.status_code == 429
    assert "pl_portal=" not in blocked.headers.get("set-cookie", "")
    index = affiliate_portal.email_index(server.runtime.cipher, email)
    with server.runtime.sessions() as db:
        stored = db.scalar(
            select(LoginFailure.key).where(LoginFailure.key == f"account:{index}").limit(1)
        )
    assert stored == f"account:{index}"  # the blind index, never the e-mail


def test_signing_up_again_with_a_known_email_changes_nothing(server: Server) -> None:
    first = portal_program(server)
    second = portal_program(server, approval="manual")
    with signed_up(server, first["id"]) as (_, email):
        pass
    before = affiliate_of(server, email)
    assert before is not None
    with browser(server) as other:
        other_password, _ = sign_up(other, second["id"], email=email, password="another password")
        after_wrong = other.get(f"/portal/{second['id']}/")
    with browser(server) as owner:
        own_password, _ = sign_up(owner, second["id"], email=email)
        joined = owner.get(f"/portal/{second['id']}/")

    assert other_password.status_code == 200
    assert "Check your e-mail or sign in" in other_password.text
    assert "pl_portal=" not in other_password.headers.get("set-cookie", "")
    assert (after_wrong.status_code, after_wrong.headers["location"]) == (
        303,
        f"/portal/{second['id']}/login",
    )
    unchanged = affiliate_of(server, email)
    assert unchanged is not None
    assert unchanged.password_hash == before.password_hash
    # The right password: the affiliate joins the second program too (signed in).
    assert (own_password.status_code, own_password.headers["location"]) == (
        303,
        f"/portal/{second['id']}/",
    )
    assert joined.status_code == 200
    with server.runtime.sessions() as db:
        assert affiliates.program_ids_of(db, before.id) == sorted([first["id"], second["id"]])


def test_an_account_staff_made_cannot_be_claimed_by_signing_up(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    email = new_email()
    with server.client() as api:
        made = api.post(
            "/api/v1/affiliates", json={"program_id": pid, "email": email, "name": "Kim"}
        )
    assert made.status_code == 201
    with browser(server) as client:
        claim, _ = sign_up(client, pid, email=email)
        login = sign_in(client, pid, email)

    assert claim.status_code == 200
    assert "Check your e-mail or sign in" in claim.text
    assert login.status_code == 401
    affiliate = affiliate_of(server, email)
    assert affiliate is not None
    assert affiliate.password_hash is None


def test_a_session_of_one_program_opens_nothing_in_another(server: Server) -> None:
    first = portal_program(server)
    second = portal_program(server)
    with signed_up(server, first["id"]) as (client, _):
        token = client.cookies.get("pl_portal")
    assert token is not None
    with browser(server) as stranger:
        # The cookie is sent to the other program's paths on purpose (a browser
        # would not: its path is the first program's base).
        stranger.cookies.set("pl_portal", token, path=f"/portal/{second['id']}")
        page = stranger.get(f"/portal/{second['id']}/")
        me = stranger.get(f"/portal/{second['id']}/api/me")
        stranger.cookies.set("pl_portal", token, path=f"/portal/{first['id']}")
        own = stranger.get(f"/portal/{first['id']}/")

    assert (page.status_code, page.headers["location"]) == (303, f"/portal/{second['id']}/login")
    assert me.status_code == 401
    assert own.status_code == 200


def test_the_portal_carries_the_programs_brand_and_speaks_dutch(server: Server) -> None:
    program = portal_program(
        server,
        portal_name="Brand Partners",
        logo_url="https://cdn.brand.example/logo.svg",
        brand_color="#aa3300",
        accent_color="0;}*{x",  # not a colour (7 characters fit the column): never reaches the page
        portal_texts={"welcome": {"en": "Welcome, partner!", "nl": "Welkom, partner!"}},
    )
    pid = program["id"]
    with browser(server) as en, browser(server, language="nl-NL,nl;q=0.9") as nl:
        login_en = en.get(f"/portal/{pid}/login")
        login_nl = nl.get(f"/portal/{pid}/login")
        signup_nl = nl.get(f"/portal/{pid}/signup")
    with browser(server) as chooser:
        done, _ = sign_up(chooser, pid)
        assert done.status_code == 303
        home = chooser.get(f"/portal/{pid}/")
        switched = chooser.post(
            f"/portal/{pid}/language",
            data={"csrf": csrf_of(home), "language": "nl", "back": "/links"},
        )
        dutch = chooser.get(f"/portal/{pid}/links")

    assert "<title>Sign in · Brand Partners</title>" in login_en.text
    assert (
        '<img class="logo" src="https://cdn.brand.example/logo.svg" alt="Brand Partners logo">'
        in login_en.text
    )
    assert "--brand: #aa3300;" in login_en.text
    assert "--accent: #0f766e;" in login_en.text  # the default replaced the bad value
    assert "0;}*{x" not in login_en.text
    assert "Welcome, partner!" in login_en.text
    assert login_nl.headers["content-language"] == "nl"
    assert "Welkom, partner!" in login_nl.text
    assert "<h1>Inloggen</h1>" in login_nl.text
    assert "Word affiliate" in signup_nl.text
    assert (switched.status_code, switched.headers["location"]) == (303, f"/portal/{pid}/links")
    assert dutch.headers["content-language"] == "nl"
    assert "Je links" in dutch.text


def test_the_portal_index_lists_the_portals(server: Server) -> None:
    program = portal_program(server, portal_name="Listed Partners")
    with browser(server) as client:
        index = client.get("/portal")
        root = client.get(f"/portal/{program['id']}")
        missing = client.get("/portal/prg_00000000000000000000000000/login")

    assert index.status_code == 200
    assert f'<a href="/portal/{program["id"]}/">Listed Partners</a>' in index.text
    assert (root.status_code, root.headers["location"]) == (303, f"/portal/{program['id']}/")
    assert missing.status_code == 404


def test_on_a_portal_domain_every_link_is_built_from_the_base_it_is_given(
    server: Server,
) -> None:
    """The ASGI layer of portal domains rewrites X to /portal/{id}X and sets the
    base to "": pages, redirects and cookies follow it."""
    program = portal_program(server)
    pid = program["id"]
    inner = create_app(server.runtime, run_worker=False)

    async def on_portal_domain(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {
                **scope,
                "path": f"/portal/{pid}{scope['path']}",
                "raw_path": None,
                "state": {"portal_base": ""},
            }
        await inner(scope, receive, send)

    async def visit() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=on_portal_domain)
        async with httpx.AsyncClient(
            transport=transport, base_url=server.runtime.settings.public_url
        ) as client:
            home = await client.get("/")
            form = await client.get("/signup")
            done = await client.post(
                "/signup",
                data={
                    "csrf": csrf_of(form),
                    "name": "Dom",
                    "email": new_email(),
                    "password": PASSWORD,
                    "terms": "on",
                },
            )
            return home, form, done

    # A thread of its own: Playwright's sync API may hold this thread's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        home, form, done = pool.submit(asyncio.run, visit()).result()

    assert (home.status_code, home.headers["location"]) == (303, "/login")
    assert 'action="/signup"' in form.text
    assert 'href="/login"' in form.text
    assert "Path=/;" in form.headers["set-cookie"] or form.headers["set-cookie"].endswith("Path=/")
    assert (done.status_code, done.headers["location"]) == (303, "/")
    assert "pl_portal=" in done.headers["set-cookie"]
    assert (
        "Path=/;" in done.headers["set-cookie"] or "Path=/\n" in done.headers["set-cookie"] + "\n"
    )
