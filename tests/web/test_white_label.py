"""A program's own domains over real HTTP: the portal host serves that program's
portal at / (and nothing else of the installation), the tracking host serves
that program's links at /{code}, an unknown host gets a 404, and the
installation's own hosts work as before."""

from __future__ import annotations

import dataclasses
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from partnerloop.core.settings import Settings, SettingsError
from partnerloop.runtime import Runtime
from partnerloop.tracking.models import Click
from partnerloop.web.app import create_app
from tests.conftest import Server, serving
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import BROWSER_UA, create_link_api


@dataclasses.dataclass
class Branded:
    program: dict[str, Any]
    portal: str
    tracking: str


def branded_program(api: httpx.Client) -> Branded:
    """A program with its own portal and tracking hosts (unique per test)."""
    brand = f"brand{secrets.token_hex(4)}.example"
    program = create_program_api(api, allowed_domains=["shop.example.com"])
    response = api.patch(
        f"/api/v1/programs/{program['id']}/settings",
        json={"portal_domain": f"partners.{brand}", "tracking_domain": f"go.{brand}"},
    )
    assert response.status_code == 200, response.text
    return Branded(program=program, portal=f"partners.{brand}", tracking=f"go.{brand}")


def _clicks(server: Server, click_id: str) -> list[Click]:
    deadline = time.monotonic() + 2.0  # clicks are group-committed: give a batch a moment
    while True:
        with server.runtime.sessions() as db:
            rows = list(db.scalars(select(Click).where(Click.id == click_id)))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def _link_clicks(server: Server, link_id: str) -> int:
    with server.runtime.sessions() as db:
        return len(list(db.scalars(select(Click).where(Click.link_id == link_id))))


def test_the_portal_host_serves_static_files_and_nothing_of_the_installation(
    server: Server,
) -> None:
    with server.client() as api:
        site = branded_program(api)
        affiliate = create_affiliate_api(api, site.program["id"])
        link = create_link_api(api, site.program["id"], affiliate["id"])
        css_main = api.get("/static/partnerloop.css")
        on_portal = {"Host": site.portal}

        css = api.get("/static/partnerloop.css", headers=on_portal)
        refused = {
            path: api.get(path, headers=on_portal).status_code
            for path in (
                "/admin",
                "/admin/login",
                "/api/v1/programs",
                f"/api/v1/programs/{site.program['id']}",
                "/api/v1/openapi.json",
                "/docs",
                "/healthz",
                "/metrics",
                f"/r/{link['code']}",
                f"/{link['code']}",
            )
        }
        hook = api.post("/hooks/con_x", headers=on_portal, content=b"{}")

    assert css.status_code == 200
    assert css.content == css_main.content
    assert refused == dict.fromkeys(refused, 404)
    assert hook.status_code in (404, 405)
    assert _link_clicks(server, link["id"]) == 0


def test_the_portal_host_shows_that_programs_portal_at_the_root(server: Server) -> None:
    with server.client() as api:
        site = branded_program(api)
        other = branded_program(api)
        named = api.patch(
            f"/api/v1/programs/{site.program['id']}/settings",
            json={"portal_name": "Brand Partners Club"},
        )
        assert named.status_code == 200
        long_form = api.get(f"/portal/{site.program['id']}/login")
        assert long_form.status_code == 200, "the portal's login page exists on the main host"

        login = api.get("/login", headers={"Host": site.portal})
        login_with_port = api.get("/login", headers={"Host": f"{site.portal.upper()}:8443"})
        other_login = api.get("/login", headers={"Host": other.portal})
        cross = api.get(f"/portal/{other.program['id']}/login", headers={"Host": site.portal})

    assert login.status_code == 200
    assert "Brand Partners Club" in login.text
    # Links on the portal's own host are short: no /portal/{id} prefix.
    assert f"/portal/{site.program['id']}" not in login.text
    assert login_with_port.status_code == 200
    assert "Brand Partners Club" in login_with_port.text
    assert other_login.status_code == 200
    assert "Brand Partners Club" not in other_login.text
    assert cross.status_code == 404


def test_the_tracking_host_redirects_its_programs_links_and_records_the_click(
    server: Server,
) -> None:
    with server.client() as api:
        site = branded_program(api)
        affiliate = create_affiliate_api(api, site.program["id"])
        link = create_link_api(
            api, site.program["id"], affiliate["id"], destination="https://shop.example.com/p/7"
        )

        response = api.get(
            f"/{link['code']}",
            params={"sub1": "newsletter"},
            headers={"Host": site.tracking, "User-Agent": BROWSER_UA},
        )
        head = api.head(f"/{link['code']}", headers={"Host": site.tracking})

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "shop.example.com",
        "/p/7",
    )
    click_id = parse_qs(location.query)["plclid"][0]
    assert f"pl_{site.program['id']}={click_id}" in response.headers["set-cookie"]
    clicks = _clicks(server, click_id)
    assert [(c.link_id, c.program_id, c.affiliate_id, c.sub1) for c in clicks] == [
        (link["id"], site.program["id"], affiliate["id"], "newsletter")
    ]
    assert head.status_code == 302
    assert _link_clicks(server, link["id"]) == 1  # HEAD records nothing


def test_the_tracking_host_serves_nothing_but_its_own_links(server: Server) -> None:
    with server.client() as api:
        site = branded_program(api)
        other = create_program_api(api, allowed_domains=["shop.example.com"])
        other_link = create_link_api(api, other["id"], create_affiliate_api(api, other["id"])["id"])
        own_link = create_link_api(
            api, site.program["id"], create_affiliate_api(api, site.program["id"])["id"]
        )
        on_tracking = {"Host": site.tracking, "User-Agent": BROWSER_UA}

        foreign = api.get(f"/{other_link['code']}", headers=on_tracking)
        statuses = {
            path: api.get(path, headers=on_tracking).status_code
            for path in (
                "/",
                f"/r/{own_link['code']}",
                f"/{own_link['code']}/x",
                "/admin",
                "/api/v1/programs",
                "/static/partnerloop.css",
                f"/portal/{site.program['id']}/login",
                "/no-such-code",
            )
        }
        posted = api.post(f"/{own_link['code']}", headers=on_tracking)
        on_main = api.get(f"/r/{other_link['code']}", headers={"User-Agent": BROWSER_UA})

    assert foreign.status_code == 404
    assert "location" not in foreign.headers
    assert statuses == dict.fromkeys(statuses, 404)
    assert posted.status_code == 405
    assert _link_clicks(server, own_link["id"]) == 0
    # The other program's link works where it belongs (the installation's /r/).
    assert on_main.status_code == 302
    assert _link_clicks(server, other_link["id"]) == 1


def test_an_unknown_host_gets_a_plain_404(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        link = create_link_api(api, program["id"], create_affiliate_api(api, program["id"])["id"])
        unknown = {"Host": f"unknown-{secrets.token_hex(3)}.example"}

        answers = [
            api.get(path, headers=unknown)
            for path in (
                "/",
                "/admin/login",
                "/api/v1/programs",
                "/static/partnerloop.css",
                f"/r/{link['code']}",
                f"/{link['code']}",
                "/healthz",
            )
        ]

    assert [a.status_code for a in answers] == [404] * len(answers)
    assert {a.headers["content-type"] for a in answers} == {"text/plain; charset=utf-8"}
    assert {a.text for a in answers} == {"Not found: this host is not served here."}
    assert _link_clicks(server, link["id"]) == 0


def test_the_installation_hosts_work_as_before(server: Server) -> None:
    port = urlsplit(server.url).port
    with server.client() as api:
        site = branded_program(api)
        link = create_link_api(
            api, site.program["id"], create_affiliate_api(api, site.program["id"])["id"]
        )
        answers = {
            host: (
                api.get("/admin/login", headers={"Host": host}).status_code,
                api.get("/api/v1/programs", headers={"Host": host}).status_code,
                api.get(
                    f"/r/{link['code']}", headers={"Host": host, "User-Agent": BROWSER_UA}
                ).status_code,
            )
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}")
        }
        # Without trust in a proxy, X-Forwarded-Host is ignored.
        forwarded = api.get("/admin/login", headers={"X-Forwarded-Host": site.portal})

    assert answers == dict.fromkeys(answers, (200, 200, 302))
    assert forwarded.status_code == 200
    assert _link_clicks(server, link["id"]) == 4
    # HTTP/1.0 without a Host header: the installation.
    assert _raw_request(server, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_api_links_use_the_tracking_domain(server: Server) -> None:
    with server.client() as api:
        site = branded_program(api)
        plain = create_program_api(api)
        affiliate = create_affiliate_api(api, site.program["id"])
        link = create_link_api(api, site.program["id"], affiliate["id"])
        plain_link = create_link_api(api, plain["id"], create_affiliate_api(api, plain["id"])["id"])
        listed = api.get("/api/v1/links", params={"program_id": site.program["id"]}).json()
        disabled = api.post(f"/api/v1/links/{link['id']}/disable").json()
        api.patch(f"/api/v1/programs/{site.program['id']}/settings", json={"tracking_domain": None})
        after_removal = api.get("/api/v1/links", params={"program_id": site.program["id"]}).json()

    public_url = server.runtime.settings.public_url
    assert link["url"] == f"http://{site.tracking}/{link['code']}"
    assert [item["url"] for item in listed["items"]] == [link["url"]]
    assert disabled["url"] == link["url"]
    assert plain_link["url"] == f"{public_url}/r/{plain_link['code']}"
    assert [item["url"] for item in after_removal["items"]] == [f"{public_url}/r/{link['code']}"]


def test_host_changes_take_effect_at_once_in_this_process(server: Server) -> None:
    host = f"new{secrets.token_hex(4)}.brand.example"
    with server.client() as api:
        program = create_program_api(api)
        link = create_link_api(api, program["id"], create_affiliate_api(api, program["id"])["id"])
        settings_url = f"/api/v1/programs/{program['id']}/settings"
        on_host = {"Host": host, "User-Agent": BROWSER_UA}

        before = api.get("/static/partnerloop.css", headers=on_host).status_code  # cached: 404
        api.patch(settings_url, json={"portal_domain": host})
        as_portal = api.get("/static/partnerloop.css", headers=on_host).status_code
        api.patch(settings_url, json={"portal_domain": None, "tracking_domain": host})
        as_tracking = api.get(f"/{link['code']}", headers=on_host).status_code
        api.patch(settings_url, json={"tracking_domain": None})
        removed = api.get(f"/{link['code']}", headers=on_host).status_code

    # The cache keeps hosts for 30 s; these answers came within that time.
    assert (before, as_portal, as_tracking, removed) == (404, 200, 302, 404)


def _raw_request(server: Server, request: bytes) -> bytes:
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- an installation behind a proxy, on its own public host -----------------------------


@pytest.fixture(scope="module")
def proxied(server: Server) -> Iterator[Server]:
    """A second server on the same database: public URL https://pl.example.org,
    one extra allowed host, X-Forwarded-* trusted."""
    settings = server.runtime.settings.with_overrides(
        public_url="https://pl.example.org",
        allowed_hosts=("admin.example.org",),
        trust_forwarded_for=True,
    )
    runtime: Runtime = dataclasses.replace(server.runtime, settings=settings)
    app = create_app(runtime, run_worker=False)
    with serving(app) as (url, _):
        yield Server(url=url, runtime=runtime, admin_key=server.admin_key, app=app)


def test_behind_a_proxy_the_forwarded_host_decides(server: Server, proxied: Server) -> None:
    with server.client() as api:
        site = branded_program(api)
        created = create_link_api(
            api, site.program["id"], create_affiliate_api(api, site.program["id"])["id"]
        )
    with proxied.client() as api:
        statuses = {
            (host, forwarded): api.get(
                "/admin/login",
                headers={"Host": host, **({"X-Forwarded-Host": forwarded} if forwarded else {})},
            ).status_code
            for host, forwarded in (
                ("pl.example.org", None),
                ("admin.example.org:443", None),
                ("127.0.0.1", None),  # not one of this installation's hosts
                ("127.0.0.1", "pl.example.org"),
                ("pl.example.org", "nobody.example"),
            )
        }
        via_proxy = api.get(
            f"/{created['code']}",
            headers={"Host": "127.0.0.1", "X-Forwarded-Host": f"{site.tracking}, proxy.internal"},
        )
        portal_css = api.get(
            "/static/partnerloop.css",
            headers={"Host": "127.0.0.1", "X-Forwarded-Host": site.portal},
        )
        link = api.get(
            f"/api/v1/links?program_id={site.program['id']}", headers={"Host": "pl.example.org"}
        )
        own_host = api.patch(
            f"/api/v1/programs/{site.program['id']}/settings",
            json={"portal_domain": "admin.example.org"},
            headers={"Host": "pl.example.org"},
        )

    assert statuses == {
        ("pl.example.org", None): 200,
        ("admin.example.org:443", None): 200,
        ("127.0.0.1", None): 404,
        ("127.0.0.1", "pl.example.org"): 200,
        ("pl.example.org", "nobody.example"): 404,
    }
    assert via_proxy.status_code == 302
    assert portal_css.status_code == 200
    # https public URL: links on the tracking domain are https too.
    assert link.json()["items"][0]["url"] == f"https://{site.tracking}/{created['code']}"
    assert own_host.status_code == 422
    assert (own_host.json()["code"], own_host.json()["field"]) == ("host_reserved", "portal_domain")


def test_behind_a_proxy_clicks_are_answered_in_place_by_the_forwarded_host(
    server: Server, proxied: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve's HTTP front (web/front.py) decides by the same host as the app
    said: list[bool] = []
    original = proxied.app.click_now

    def spy(*args: Any) -> bool:
        said.append(original(*args))
        return said[-1]

    monkeypatch.setattr(proxied.app, "click_now", spy)
    with server.client() as api:
        program = create_program_api(api)
        code = create_link_api(api, program["id"], create_affiliate_api(api, program["id"])["id"])[
            "code"
        ]
    answers = []
    with proxied.client() as api:
        for forwarded_host in ("pl.example.org", "pl.example.org", "nobody.example"):
            answers.append(
                api.get(
                    f"/r/{code}",
                    headers={
                        "Host": "127.0.0.1",
                        "X-Forwarded-Host": forwarded_host,
                        "X-Forwarded-For": "198.51.100.7, 10.0.0.1",
                    },
                )
            )
    # The first loads the link, the second is answered in place, the third is not
    # this installation's host (offered, declined, and 404 the usual way)
    assert said == [False, True, False]
    assert [answer.status_code for answer in answers] == [302, 302, 404]
    click_id = parse_qs(urlsplit(answers[1].headers["location"]).query)["plclid"][0]
    with proxied.runtime.sessions() as db:
        click = db.get(Click, click_id)
        assert click is not None
        assert click.ip_enc is not None
        assert proxied.runtime.cipher.decrypt(click.ip_enc, field="click.ip") == "198.51.100.7"


def test_allowed_hosts_setting() -> None:
    base = {"PARTNERLOOP_DATA_DIR": "/tmp/pl-hosts"}

    default = Settings.from_env(base)
    custom = Settings.from_env(
        {
            **base,
            "PARTNERLOOP_PUBLIC_URL": "https://Affiliates.Shop.Example/",
            "PARTNERLOOP_ALLOWED_HOSTS": " Admin.Shop.Example:8443, [::1]:8000,10.0.0.5, ",
        }
    )
    only_public = Settings.from_env({**base, "PARTNERLOOP_ALLOWED_HOSTS": ""})
    ipv6_public = Settings.from_env(
        {**base, "PARTNERLOOP_PUBLIC_URL": "http://[fd00::1]:8000", "PARTNERLOOP_ALLOWED_HOSTS": ""}
    )

    assert default.installation_hosts == {"127.0.0.1", "localhost", "[::1]"}
    assert custom.installation_hosts == {
        "affiliates.shop.example",
        "admin.shop.example",
        "[::1]",
        "10.0.0.5",
    }
    assert only_public.installation_hosts == {"127.0.0.1"}
    assert ipv6_public.installation_hosts == {"[fd00::1]"}
    with pytest.raises(SettingsError, match="PARTNERLOOP_ALLOWED_HOSTS"):
        Settings.from_env({**base, "PARTNERLOOP_ALLOWED_HOSTS": "https://admin.shop.example/"})
