"""The HTTP/1.1 wire of ``classify bench --protocol http``: pre-built requests on keep-alive sockets.

httpx spent ~1.3-1.5 ms of the load generator's CPU on each 100 KB request (measured against ~0.3 ms
for a gRPC call of the same rows), on a machine where the tool and the server share two cores: the
bench measured its own client. So, as the gRPC side sends pre-serialized bytes through a generic
method, each request here is built once (request line, headers, body) and written as it is; an answer
is read only as far as its status line and its length, never parsed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024  # a response head longer than this is not an answer from a classify-server


class WireError(Exception):
    """The connection broke or the answer is not HTTP/1.1: the request counts as failed."""


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, base_url: str, verify: ssl.SSLContext | bool) -> Origin:
        parts = urlsplit(base_url)
        secure = parts.scheme == "https"
        context = None
        if secure:
            context = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
            if verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return cls(parts.hostname or "127.0.0.1", parts.port or (443 if secure else 80), context)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def post_request(origin: Origin, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """One complete ``POST`` as bytes, ready to be written again and again."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {origin.authority}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, origin: Origin) -> Connection:
        reader, writer = await asyncio.open_connection(
            origin.host, origin.port, ssl=origin.tls, limit=MAX_HEAD_BYTES
        )
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        """Write ``request``, read the whole answer, return its status code."""
        self._writer.write(request)
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise WireError(f"no HTTP answer ({type(exc).__name__})") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
        fields = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("connection", "").lower() == "close":
            self.reusable = False
        try:
            if "chunked" in fields.get("transfer-encoding", "").lower():
                await self._skip_chunks()
            elif fields.get("content-length", "").isdigit():
                await self._reader.readexactly(int(fields["content-length"]))
            else:  # no length: the body runs to the end of the connection
                await self._reader.read()
                self.reusable = False
        except (asyncio.IncompleteReadError, ValueError) as exc:
            raise WireError(f"the answer's body broke off ({type(exc).__name__})") from None
        return int(parts[1])

    async def _skip_chunks(self) -> None:
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await self._reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return

    def closed_by_server(self) -> bool:
        return self._reader.at_eof()

    def close(self) -> None:
        self.reusable = False
        self._writer.close()


class ConnectionPool:
    """Idle keep-alive connections to one origin; a new one opens whenever none is idle, so there are
    as many as requests in flight."""

    def __init__(self, origin: Origin) -> None:
        self._origin = origin
        self._idle: list[Connection] = []

    async def send(self, request: bytes, timeout: float) -> int:
        """The status of one exchange; a timeout or a broken connection closes that connection."""
        connection = None
        while self._idle and connection is None:
            connection = self._idle.pop()
            if connection.closed_by_server():  # an idle keep-alive the server has since let go
                connection.close()
                connection = None
        try:
            async with asyncio.timeout(timeout):
                if connection is None:
                    connection = await Connection.open(self._origin)
                status = await connection.exchange(request)
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        if connection.reusable:
            self._idle.append(connection)
        else:
            connection.close()
        return status

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
