"""The portal's link builder, QR codes, coupons and dashboard, over real HTTP:
a link made in the portal, followed at /r/{code}, counted on the dashboard."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import httpx
from sqlalchemy import select

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.programs import domains
from partnerloop.tracking.models import Link
from tests.affiliates.portal_support import browser, csrf_of, portal_program, signed_up
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.tracking import BROWSER_UA, create_link_api


def links_of(server: Server, program_id: str, affiliate_id: str) -> list[Link]:
    with server.runtime.sessions() as db:
        rows = list(
            db.scalars(
                select(Link)
                .where(Link.program_id == program_id, Link.affiliate_id == affiliate_id)
                .order_by(Link.id)
            )
        )
        db.expunge_all()
        return rows


def me(client: httpx.Client, program_id: str) -> str:
    answer = client.get(f"/portal/{program_id}/api/me")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def kpi(page: httpx.Response, name: str) -> str:
    match = re.search(rf'id="kpi-{name}">([^<]*)<', page.text)
    assert match, page.text
    return match.group(1)


def follow(code: str, server: Server, shopper: httpx.Client) -> None:
    answer = shopper.get(f"/r/{code}", headers={"User-Agent": BROWSER_UA})
    assert answer.status_code == 302, answer.text


def test_a_link_made_in_the_portal_counts_its_clicks_on_the_dashboard(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (client, _):
        affiliate_id = me(client, pid)
        page = client.get(f"/portal/{pid}/links")
        made = client.post(
            f"/portal/{pid}/links",
            data={
                "csrf": csrf_of(page),
                "destination_url": "https://shop.example.com/shoes/red?size=42",
                "sub1": "newsletter",
                "sub3": "march",
            },
        )
        listed = client.get(f"/portal/{pid}/links")
        (link,) = links_of(server, pid, affiliate_id)
        with browser(server) as shopper:  # one browser twice, then another
            follow(link.code, server, shopper)
            follow(link.code, server, shopper)
        with browser(server) as second_shopper:
            follow(link.code, server, second_shopper)
        # Clicks are group-committed before the redirect answers; poll briefly anyway.
        deadline = time.monotonic() + 5
        dashboard = client.get(f"/portal/{pid}/")
        while kpi(dashboard, "clicks") != "3" and time.monotonic() < deadline:
            time.sleep(0.1)
            dashboard = client.get(f"/portal/{pid}/")

    assert (made.status_code, made.headers["location"]) == (303, f"/portal/{pid}/links")
    assert link.destination_url == "https://shop.example.com/shoes/red?size=42"
    assert (link.sub1, link.sub2, link.sub3) == ("newsletter", None, "march")
    assert f'value="{server.runtime.settings.public_url}/r/{link.code}"' in listed.text
    assert "sub1=newsletter, sub3=march" in listed.text
    assert f'src="/portal/{pid}/links/{link.id}/qr.svg"' in listed.text
    assert kpi(dashboard, "clicks") == "3"
    assert kpi(dashboard, "unique") == "2"
    assert kpi(dashboard, "conversions") == "0"
    today = utcnow().date().isoformat()
    assert re.search(
        rf'<tr><th scope="row">{today}</th><td class="num">3</td><td class="num">2</td>'
        r'<td class="num">0</td></tr>',
        dashboard.text,
    ), dashboard.text


def test_with_htmx_the_new_row_comes_back_alone(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (client, _):
        page = client.get(f"/portal/{pid}/links")
        row = client.post(
            f"/portal/{pid}/links",
            data={"csrf": csrf_of(page), "destination_url": "https://www.shop.example.com/a"},
            headers={"HX-Request": "true"},
        )
        refused = client.post(
            f"/portal/{pid}/links",
            data={"csrf": csrf_of(page), "destination_url": "https://evil.example/a"},
            headers={"HX-Request": "true"},
        )
        affiliate_id = me(client, pid)

    assert row.status_code == 200
    assert row.text.lstrip().startswith('<tr id="link-')
    assert "<html" not in row.text
    assert 'hx-swap-oob="delete"' in row.text  # the "no links yet" row goes
    assert "https://www.shop.example.com/a" in row.text
    assert refused.status_code == 422
    assert refused.headers["hx-retarget"] == "#link-error"
    assert "is not on this program&#39;s website" in refused.text
    assert [link.destination_url for link in links_of(server, pid, affiliate_id)] == [
        "https://www.shop.example.com/a"
    ]


def test_a_destination_outside_the_allowed_domains_is_refused(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (client, _):
        page = client.get(f"/portal/{pid}/links")
        refused = [
            client.post(
                f"/portal/{pid}/links", data={"csrf": csrf_of(page), "destination_url": url}
            )
            for url in (
                "https://evil.example/shop.example.com",
                "https://shop.example.com.evil.example/",
                "javascript:alert(1)",
                "",
            )
        ]
        too_long_sub = client.post(
            f"/portal/{pid}/links",
            data={
                "csrf": csrf_of(page),
                "destination_url": "https://shop.example.com/",
                "sub2": "x" * 256,
            },
        )
        affiliate_id = me(client, pid)

    assert [answer.status_code for answer in refused] == [422, 422, 422, 422]
    assert "is not on this program&#39;s website" in refused[0].text
    assert 'value="https://evil.example/shop.example.com"' in refused[0].text  # kept for fixing
    assert too_long_sub.status_code == 422
    assert "at most 255 characters" in too_long_sub.text
    assert links_of(server, pid, affiliate_id) == []


def test_the_qr_code_is_the_owners_only(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (owner, _), signed_up(server, pid) as (other, _):
        page = owner.get(f"/portal/{pid}/links")
        owner.post(
            f"/portal/{pid}/links",
            data={"csrf": csrf_of(page), "destination_url": "https://shop.example.com/qr"},
        )
        (link,) = links_of(server, pid, me(owner, pid))
        own = owner.get(f"/portal/{pid}/links/{link.id}/qr.svg")
        stolen = other.get(f"/portal/{pid}/links/{link.id}/qr.svg")
        unknown = owner.get(f"/portal/{pid}/links/lnk_00000000000000000000000000/qr.svg")
    with browser(server) as anonymous:
        signed_out = anonymous.get(f"/portal/{pid}/links/{link.id}/qr.svg")

    assert own.status_code == 200
    assert own.headers["content-type"] == "image/svg+xml"
    assert own.text.startswith("<svg")
    assert f"/r/{link.code}" in own.text  # the title names the URL it encodes
    assert "default-src 'none'" in own.headers["content-security-policy"]
    assert stolen.status_code == 404
    assert link.code not in stolen.text
    assert unknown.status_code == 404
    assert (signed_out.status_code, signed_out.headers["location"]) == (
        303,
        f"/portal/{pid}/login",
    )


def test_links_show_the_programs_tracking_domain(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    host = f"go-{pid[-8:].lower()}.brand.example"
    with transaction(server.runtime.sessions) as db:
        domains.set_domain(db, program_id=pid, purpose="tracking", host=host, now=utcnow())
    with signed_up(server, pid) as (client, _):
        page = client.get(f"/portal/{pid}/links")
        client.post(
            f"/portal/{pid}/links",
            data={"csrf": csrf_of(page), "destination_url": "https://shop.example.com/"},
        )
        (link,) = links_of(server, pid, me(client, pid))
        listed = client.get(f"/portal/{pid}/links")

    assert f'value="http://{host}/{link.code}"' in listed.text


def test_coupons_and_recent_commissions_are_the_affiliates_own(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with server.client() as api, signed_up(server, pid) as (client, _):
        affiliate_id = me(client, pid)
        other = create_affiliate_api(api, pid)
        for code, owner in (("PAT10", affiliate_id), ("OTHER10", other["id"])):
            made = api.post(
                "/api/v1/coupons", json={"program_id": pid, "affiliate_id": owner, "code": code}
            )
            assert made.status_code == 201, made.text
        coupons = client.get(f"/portal/{pid}/coupons")
        other_link = create_link_api(api, pid, other["id"])
        dashboard = client.get(f"/portal/{pid}/")

    assert coupons.status_code == 200
    assert "<code>PAT10</code>" in coupons.text
    assert "OTHER10" not in coupons.text
    assert other_link["code"] not in dashboard.text
    assert "No commissions yet." in dashboard.text


def test_the_dashboard_period_is_chosen_and_checked(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    today = utcnow().date()
    with signed_up(server, pid) as (client, _):
        default = client.get(f"/portal/{pid}/")
        chosen = client.get(
            f"/portal/{pid}/",
            params={"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat()},
        )
        backwards = client.get(
            f"/portal/{pid}/", params={"from": today.isoformat(), "to": "2000-01-01"}
        )
        not_a_date = client.get(f"/portal/{pid}/", params={"from": "yesterday"})

    assert default.status_code == 200
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in default.text
    assert chosen.status_code == 200
    assert f"{(today - timedelta(days=6)).isoformat()} to {today.isoformat()}" in chosen.text
    assert backwards.status_code == 422
    assert not_a_date.status_code == 422
