"""GET /r/{code}: what the shopper gets and what is recorded."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select

from partnerloop.tracking.models import Click
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import BROWSER_UA, click, click_id_of, create_link_api


def _link(api: httpx.Client, **extra: object) -> tuple[dict, dict]:
    program = create_program_api(api, allowed_domains=["shop.example.com"])
    affiliate = create_affiliate_api(api, program["id"])
    return program, create_link_api(api, program["id"], affiliate["id"], **extra)


def _clicks(server: Server, link_id: str) -> list[Click]:
    with server.runtime.sessions() as db:
        return list(db.scalars(select(Click).where(Click.link_id == link_id).order_by(Click.id)))


def test_unknown_code_is_a_plain_404_page(server: Server) -> None:
    with server.client() as api:
        for code in ("doesnotexist", "bad%20code", "x" * 80):
            response = api.get(f"/r/{code}")
            assert response.status_code == 404
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert "Link not found" in response.text
            assert "location" not in response.headers


def test_disabled_link_is_a_404_and_records_nothing(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)
        assert api.post(f"/api/v1/links/{link['id']}/disable").json()["disabled"] is True

        response = api.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA})

        assert response.status_code == 404
        assert _clicks(server, link["id"]) == []


def test_links_of_a_suspended_affiliate_stop(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)
        assert (
            api.post(f"/api/v1/affiliates/{link['affiliate_id']}/suspend").json()["status"]
            == "suspended"
        )

        assert api.get(f"/r/{link['code']}").status_code == 404


def test_click_time_deep_link_only_to_allowed_hosts(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)

        inside = api.get(f"/r/{link['code']}", params={"url": "https://www.shop.example.com/sale"})
        outside = api.get(f"/r/{link['code']}", params={"url": "https://evil.example/login"})
        tricky = api.get(
            f"/r/{link['code']}", params={"url": "https://shop.example.com@evil.example/"}
        )

        assert urlsplit(inside.headers["location"]).netloc == "www.shop.example.com"
        assert urlsplit(outside.headers["location"]).netloc == "shop.example.com"
        assert urlsplit(tricky.headers["location"]).netloc == "shop.example.com"
        assert [c.landing_url for c in _clicks(server, link["id"])] == [
            "https://www.shop.example.com/sale",
            link["destination_url"],
            link["destination_url"],
        ]


def test_sub_ids_from_the_link_and_from_the_click(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api, sub1="preset-1", sub2="preset-2")

        click(api, link["code"], params={"sub2": "from-click", "sub5": "five"})

        [recorded] = _clicks(server, link["id"])
        assert (recorded.sub1, recorded.sub2, recorded.sub3, recorded.sub4, recorded.sub5) == (
            "preset-1",
            "from-click",
            None,
            None,
            "five",
        )


def test_returning_browser_is_not_a_unique_click(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)
        first = api.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA})
        cookie = first.headers["set-cookie"].split(";")[0]

        second = api.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA, "Cookie": cookie})

        assert [c.is_unique for c in _clicks(server, link["id"])] == [True, False]
        assert click_id_of(second) != click_id_of(first)
        stats = api.get("/api/v1/stats", params={"program_id": link["program_id"]}).json()
        assert (stats["clicks"], stats["unique_clicks"]) == (2, 1)


def test_bot_click_is_recorded_as_a_bot(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)

        api.get(
            f"/r/{link['code']}",
            headers={"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        )

        [recorded] = _clicks(server, link["id"])
        assert (recorded.is_bot, recorded.device, recorded.is_unique) == (True, "bot", False)


def test_head_redirects_without_recording(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)

        response = api.head(f"/r/{link['code']}")

        assert response.status_code == 302
        assert "plclid" not in response.headers["location"]
        assert _clicks(server, link["id"]) == []


def test_post_to_a_link_is_405(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)
        assert api.post(f"/r/{link['code']}").status_code == 405


def test_ip_is_stored_encrypted(server: Server) -> None:
    with server.client() as api:
        _, link = _link(api)
        click(api, link["code"])

    [recorded] = _clicks(server, link["id"])
    assert recorded.ip_enc is not None
    assert "127.0.0.1" not in recorded.ip_enc
    assert server.runtime.cipher.decrypt(recorded.ip_enc, field="click.ip") == "127.0.0.1"


def test_every_302_is_preceded_by_its_commit(server: Server) -> None:
    # 50 concurrent shoppers: each click id handed out must already be stored when
    # the 302 arrives (group commit batches them, but never answers early).
    import concurrent.futures

    with server.client() as api:
        _, link = _link(api)

    def shop(_: int) -> tuple[str, bool]:
        with server.client() as client:
            response = client.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA})
            click_id = parse_qs(urlsplit(response.headers["location"]).query)["plclid"][0]
        with server.runtime.sessions() as db:
            return click_id, db.get(Click, click_id) is not None

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(shop, range(50)))

    assert all(stored for _, stored in results)
    assert len({click_id for click_id, _ in results}) == 50
    with server.runtime.sessions() as db:
        assert (
            db.scalar(select(func.count()).select_from(Click).where(Click.link_id == link["id"]))
            == 50
        )


def test_custom_codes_are_unique_and_random_ones_do_not_collide(server: Server) -> None:
    with server.client() as api:
        program, link = _link(api, code="summer-sale")
        second = api.post(
            "/api/v1/links",
            json={
                "program_id": program["id"],
                "affiliate_id": link["affiliate_id"],
                "destination_url": "https://shop.example.com/",
                "code": "summer-sale",
            },
        )
        random_codes = {
            create_link_api(api, program["id"], link["affiliate_id"])["code"] for _ in range(30)
        }

    assert link["code"] == "summer-sale"
    assert link["url"].endswith("/r/summer-sale")
    assert (second.status_code, second.json()["code"], second.json()["field"]) == (
        409,
        "code_taken",
        "code",
    )
    assert len(random_codes) == 30
    assert all(len(code) == 7 for code in random_codes)
