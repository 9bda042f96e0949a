"""The HTTP front of `partnerloop serve`: uvicorn's httptools protocol, with the
common click answered in place.

A click on the installation's host whose link is cached (PartnerloopApp.click_now)
is queued for the store as soon as its headers are parsed, and its 302 is
written when the store says it is committed; everything else (other paths,
methods, hosts, a link not yet cached, pipelined requests) goes through the ASGI
app as before. The ASGI round (a scope, a task, a request-response cycle, the
response's header checks) cost more per click than our whole handler (py-spy,
benchmarks/RESULTS.md, issue 6 session 7).

It leans on uvicorn's protocol internals, so uvicorn is pinned
(pyproject.toml); tests/web/test_front.py covers what it relies on: keep-alive,
HTTP/1.0, pipelining, a client gone before the answer, shutdown with clicks in
flight.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from partnerloop.web.app import FRONT_STATE_KEY


class _NoEvent:
    """What uvicorn sets on a request's cycle when the body moves or the client
    goes; a click in flight has nobody waiting for either."""

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class _ClickInFlight:
    """Stands in for uvicorn's request-response cycle while a click waits for its
    commit: the protocol reads these attributes (the response is not complete,
    so further requests queue behind it; a shutdown clears keep_alive; a lost
    connection sets disconnected)."""

    response_complete = False
    disconnected = False
    more_body = True
    body = b""
    message_event = _NO_EVENT

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive


class ClickFront(HttpToolsProtocol):
    """Pass as uvicorn's `http` (the class, or "partnerloop.web.front:ClickFront")."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn logs each answer at INFO when its access log has a handler; then
        # the ASGI round answers, which logs (serve turns it off, core/logs.py).
        self._logs_each_answer = self.access_log and self.access_logger.isEnabledFor(logging.INFO)

    def on_headers_complete(self) -> None:
        app: Any = self.app_state.get(FRONT_STATE_KEY)
        parser = self.parser
        if (
            app is None
            or (self.cycle is not None and not self.cycle.response_complete)
            or self.pipeline
            or self._logs_each_answer
            or self.limit_concurrency is not None
            or parser.get_method() != b"GET"
            or parser.should_upgrade()
        ):
            super().on_headers_complete()
            return
        previous = self.cycle
        click = _ClickInFlight(parser.get_http_version() != "1.0" and parser.should_keep_alive())
        self.cycle = click  # type: ignore[assignment]
        if not app.click_now(
            self.url, self.headers, self.client, lambda lines: self._answer(click, lines)
        ):
            self.cycle = previous
            super().on_headers_complete()

    def _answer(self, click: _ClickInFlight, lines: bytes) -> None:
        """The click is committed (or failed): its 302, then what uvicorn does after
        every response (the next pipelined request, or the keep-alive timer)."""
        click.response_complete = True
        if click.disconnected or self.transport.is_closing():  # the shopper left
            return
        head = [STATUS_LINE[302]]
        for name, value in self.server_state.default_headers:  # date, server
            head += (name, b": ", value, b"\r\n")
        head.append(lines)
        head.append(b"\r\n" if click.keep_alive else b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head))
        if not click.keep_alive:
            self.transport.close()
        self.on_response_complete()
