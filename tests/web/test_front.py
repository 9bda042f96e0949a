"""The HTTP front (web/front.py): a click on a cached link is answered without
the ASGI round, with the same redirect, after its commit; and whatever uvicorn's
protocol does around a response still holds: keep-alive, HTTP/1.0, pipelined
requests in order, a shopper gone before the answer, a shutdown with clicks in
flight."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, text

from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Click
from partnerloop.web.app import create_app
from tests.conftest import Server, serving
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import BROWSER_UA, create_link_api

Response = tuple[int, dict[str, str], bytes]


@pytest.fixture
def answered_in_place(server: Server, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the front's fast path said for each request it was offered."""
    said: list[bool] = []
    original = server.app.click_now

    def spy(*args: Any) -> bool:
        taken = original(*args)
        said.append(taken)
        return taken

    monkeypatch.setattr(server.app, "click_now", spy)
    return said


def _link(server: Server) -> dict[str, Any]:
    with server.client() as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        return create_link_api(api, program["id"], affiliate["id"])


def _stored(server: Server, link_id: str) -> set[str]:
    with server.runtime.sessions() as db:
        return set(db.scalars(select(Click.id).where(Click.link_id == link_id)))


def _click_id(headers: dict[str, str]) -> str | None:
    ids = parse_qs(urlsplit(headers["location"]).query).get("plclid")
    return ids[0] if ids else None


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _get(url: str, path: str, *, version: str = "1.1", host_first: bool = True) -> bytes:
    host = f"Host: {urlsplit(url).netloc}\r\n"
    agent = f"User-Agent: {BROWSER_UA}\r\n"
    headers = host + agent if host_first else agent + host
    return f"GET {path} HTTP/{version}\r\n{headers}\r\n".encode()


def _read(sock: socket.socket, count: int) -> list[Response]:
    """`count` responses off the socket, in the order they came."""
    buffer, responses = b"", []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(responses)} responses")
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(": ")
            headers[name.lower()] = value
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            buffer += sock.recv(65536)
        responses.append((int(status_line.split()[1]), headers, buffer[:length]))
        buffer = buffer[length:]
    return responses


def _closed(sock: socket.socket) -> bool:
    """Closed by the server now, not by its keep-alive timeout (5 s) later."""
    sock.settimeout(2.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_cached_link_is_answered_in_place_with_the_same_redirect(
    server: Server, answered_in_place: list[bool]
) -> None:
    link = _link(server)
    with server.client() as api:
        # Given a first click, which loads the link (the usual way)
        first = api.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA})
        # When the next click comes while the link is cached
        second = api.get(f"/r/{link['code']}", headers={"User-Agent": BROWSER_UA})
    # Then only the second is answered in place, with the same redirect
    assert answered_in_place == [False, True]
    assert first.status_code == second.status_code == 302
    assert set(first.headers) == set(second.headers)
    for name in ("cache-control", "referrer-policy", "content-length", "server"):
        assert first.headers[name] == second.headers[name]
    first_id, second_id = _click_id(dict(first.headers)), _click_id(dict(second.headers))
    assert first_id
    assert second_id
    assert first_id != second_id
    assert second.headers["location"].replace(second_id, first_id) == first.headers["location"]
    assert second.headers["set-cookie"].replace(second_id, first_id) == first.headers["set-cookie"]
    assert second.text == ""
    # And its click was stored before its 302 was sent
    assert _stored(server, link["id"]) == {first_id, second_id}


def test_clicks_with_a_query_keep_their_parameters_and_sub_ids(
    server: Server, answered_in_place: list[bool]
) -> None:
    link = _link(server)
    with server.client() as api:
        api.get(f"/r/{link['code']}")  # cached
        response = api.get(
            f"/r/{link['code']}",
            params={"sub1": "newsletter", "utm_source": "mail"},
            headers={"User-Agent": BROWSER_UA, "Cookie": f"pl_{link['program_id']}=earlier"},
        )
    assert answered_in_place == [False, True]
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["utm_source"] == ["mail"]
    assert "sub1" not in query  # ours, not passed on
    with server.runtime.sessions() as db:
        click = db.get(Click, query["plclid"][0])
        assert click is not None
        assert click.sub1 == "newsletter"
        assert click.is_unique is False  # the program's cookie was there


@pytest.mark.parametrize(
    "query",
    [
        "url=http://[not-a-host/x",  # a deep link urlsplit refuses
        "url=https://elsewhere.example/p",  # not one of the program's domains
        "sub1=%ff%fe%00&sub2=" + "x" * 2000,  # undecodable, a control byte, too long
        "&&==&sub3",
        "plclid=forged&utm_source=a%20b",
    ],
)
def test_odd_queries_are_answered_in_place_and_the_click_stored(
    server: Server, answered_in_place: list[bool], query: str
) -> None:
    link = _link(server)
    with _connect(server.url) as sock:
        answers = []
        for _ in range(2):
            sock.sendall(_get(server.url, f"/r/{link['code']}?{query}"))
            answers += _read(sock, 1)
    assert answered_in_place == [False, True]
    assert [status for status, _, _ in answers] == [302, 302]
    location = answers[1][1]["location"]
    assert location.startswith("https://shop.example.com/p/1")
    assert "forged" not in location
    # Both stored (the first the usual way): a NUL in a sub id had failed the whole
    # batch on PostgreSQL, other shoppers' clicks with it
    assert {_click_id(headers) for _, headers, _ in answers} == _stored(server, link["id"])
    with server.runtime.sessions() as db:
        subs = db.scalars(select(Click.sub1).where(Click.link_id == link["id"])).all()
    assert all("\x00" not in (sub or "") for sub in subs)


def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    server: Server, answered_in_place: list[bool]
) -> None:
    link = _link(server)
    code = link["code"]
    with _connect(server.url) as sock:
        sock.sendall(_get(server.url, f"/r/{code}"))
        (loaded,) = _read(sock, 1)
        # When pages and clicks arrive in one write, a page first
        sock.sendall(
            _get(server.url, "/healthz")
            + _get(server.url, f"/r/{code}")
            + _get(server.url, "/healthz")
            + _get(server.url, f"/r/{code}")
            + _get(server.url, f"/r/{code}")
        )
        answers = _read(sock, 5)
        # Then the connection stays open for more
        sock.sendall(_get(server.url, f"/r/{code}"))
        (last,) = _read(sock, 1)
    # Then they are answered in the order they came
    assert [status for status, _, _ in answers] == [200, 302, 200, 302, 302]
    assert b"ok" in answers[0][2]
    ids = [_click_id(headers) for headers in (loaded[1], answers[1][1], answers[3][1])]
    ids += [_click_id(answers[4][1]), _click_id(last[1])]
    assert None not in ids
    assert len(set(ids)) == 5
    assert _stored(server, link["id"]) == set(ids)
    # The link loaded, the first page (offered, not a click), the last click: those
    # queued behind another request went the usual way, in turn
    assert answered_in_place == [False, False, True]


def test_a_host_sent_after_other_headers_still_counts(
    server: Server, answered_in_place: list[bool]
) -> None:
    # wrk and some clients send Host after the headers they were given
    link = _link(server)
    with _connect(server.url) as sock:
        answers = []
        for _ in range(2):  # one at a time: a request queued behind another is not offered
            sock.sendall(_get(server.url, f"/r/{link['code']}", host_first=False))
            answers += _read(sock, 1)
    assert [status for status, _, _ in answers] == [302, 302]
    assert answered_in_place == [False, True]
    assert {_click_id(headers) for _, headers, _ in answers} == _stored(server, link["id"])


def test_http_1_0_is_answered_and_closed(server: Server, answered_in_place: list[bool]) -> None:
    link = _link(server)
    with server.client() as api:
        api.get(f"/r/{link['code']}")
    with _connect(server.url) as sock:
        sock.sendall(_get(server.url, f"/r/{link['code']}", version="1.0"))
        ((status, headers, _),) = _read(sock, 1)
        assert status == 302
        assert headers["connection"] == "close"
        assert _closed(sock)
    assert answered_in_place == [False, True]
    assert _click_id(headers) in _stored(server, link["id"])


def test_a_shopper_gone_before_the_answer_still_leaves_one_click(
    server: Server, answered_in_place: list[bool]
) -> None:
    link = _link(server)
    with server.client() as api:
        api.get(f"/r/{link['code']}")
    # When the shopper closes the connection right after asking
    with _connect(server.url) as sock:
        sock.sendall(_get(server.url, f"/r/{link['code']}"))
    # Then the click is stored once, and the server answers the next one
    _wait_for(lambda: len(_stored(server, link["id"])) == 2)
    with server.client() as api:
        assert api.get(f"/r/{link['code']}").status_code == 302
    assert answered_in_place == [False, True, True]
    assert len(_stored(server, link["id"])) == 3


def test_a_click_the_store_cannot_commit_goes_on_without_a_click_id(
    server: Server, answered_in_place: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    link = _link(server)
    with server.client() as api:
        taken = _click_id(dict(api.get(f"/r/{link['code']}").headers))
        # When the next click's insert fails (its id already taken)
        monkeypatch.setattr(tracking, "new_click_id", lambda: taken)
        response = api.get(f"/r/{link['code']}")
    # Then the shopper still goes to the shop, without a click id or cookie
    assert answered_in_place == [False, True]
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example.com/p/1"
    assert "set-cookie" not in response.headers
    assert _stored(server, link["id"]) == {taken}


@pytest.fixture
def own_server(server: Server) -> Iterator[tuple[str, Any, list[bool]]]:
    """A server of its own (this test stops it): URL, uvicorn, what its front said."""
    app = create_app(server.runtime, run_worker=False)
    said: list[bool] = []
    original = app.click_now

    def spy(*args: Any) -> bool:
        said.append(original(*args))
        return said[-1]

    app.click_now = spy  # type: ignore[method-assign]
    with serving(app) as (url, uv):
        yield url, uv, said


@contextmanager
def _clicks_held(server: Server) -> Iterator[None]:
    """Click inserts wait while inside (another connection holds the lock)."""
    engine = server.runtime.engine
    if engine.dialect.name == "sqlite":
        holder = sqlite3.connect(str(engine.url.database), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE clicks IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            holder.rollback()


def test_clicks_in_flight_at_shutdown_are_answered_and_stored(
    server: Server, own_server: tuple[str, Any, list[bool]]
) -> None:
    url, uv, said = own_server
    link = _link(server)
    with httpx.Client(base_url=url) as api:
        api.get(f"/r/{link['code']}")  # cached
    sockets = [_connect(url) for _ in range(20)]
    try:
        with _clicks_held(server):
            # Given 20 clicks queued in place and waiting for their commit
            for sock in sockets:
                sock.sendall(_get(url, f"/r/{link['code']}"))
            _wait_for(lambda: said.count(True) == 20)
            # When the server is told to stop meanwhile
            uv.should_exit = True
            time.sleep(0.5)  # its shutdown has begun (it looks every 0.1 s)
        # Then each is answered with its stored click, and its connection closed
        answers = [_read(sock, 1)[0] for sock in sockets]
        assert all(_closed(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    assert [status for status, _, _ in answers] == [302] * 20
    assert all(headers["connection"] == "close" for _, headers, _ in answers)
    ids = {_click_id(headers) for _, headers, _ in answers}
    assert len(ids) == 20
    assert None not in ids
    stored = _stored(server, link["id"])
    assert ids < stored
    assert len(stored) == 21
