"""A deadline for HTTP request headers: the slow-loris defence uvicorn does not have.

uvicorn's h11 protocol arms no timer while a request's headers arrive: its keep-alive timeout runs only
between a response and the next request's first byte, and any byte cancels it. A client that opens a
connection and sends nothing, or trickles one header line every few seconds and never ends them, holds
its connection (a file descriptor, a buffer) for as long as it likes; enough of them exhaust the server.
h11 already bounds their size (a head still incomplete after 16 KiB is a 400), not their time. Here the
head of each request must arrive within ``header_timeout`` seconds of the connection opening or of its
first byte after a keep-alive pause; otherwise the server answers 408 and closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def timeout_response(seconds: float) -> bytes:
    """A complete 408 with the server's JSON error body, written raw: h11 cannot answer a request it
    has not parsed, and the connection ends with it anyway."""
    body = json.dumps(
        {
            "error": f"the request headers did not arrive within {seconds:g} s "
            "(--http-header-timeout-seconds)",
            "code": "DEADLINE_EXCEEDED",
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head (see the module's doc)."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the head is complete (or refused): the body has its own timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "closed the connection of %s: its request headers did not arrive within %g s "
            "(--http-header-timeout-seconds)",
            client,
            self.header_timeout,
        )
        self.transport.write(timeout_response(self.header_timeout))
        self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HeaderTimeoutH11Protocol]:
    """The protocol class for uvicorn's ``http=``: uvicorn builds one per connection from its config,
    so the setting travels as a class attribute."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout": seconds})
