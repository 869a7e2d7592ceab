"""The first bytes of every connection: plain stream requests are served here, the rest by aiohttp.

Opening a stream through aiohttp costs a request parser, a request, a response
and two tasks, all dropped the moment the head is sent (``live.py``). Most
stream requests are plain: one packet holding ``GET /events?...`` and a few
ASCII headers. The front door reads the first bytes of each connection; when
they are such a request it checks and opens the stream itself
(``stream.OpeningStream``: the same checks, the same head, byte for byte).

Anything else goes to aiohttp exactly as it came, the bytes already read
included: other paths and methods, a head split over several packets, a body,
a header that is repeated, not ASCII, or folded, cookies when tokens are
checked, anything that fails a check (aiohttp checks it again and answers
the problem). A connection that sends nothing is closed after
``--request-head-timeout``; one that sends part of a head gets that time again
from aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable
from typing import cast

from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from sse_hub.auth import VERIFIER
from sse_hub.stream import OpeningStream

log = logging.getLogger(__name__)

STREAM_PATH = "/events"
# aiohttp's own limit for a request line or a header line.
MAX_HEAD_BYTES = 8190
_VERSIONS = {b"HTTP/1.1": HttpVersion11, b"HTTP/1.0": HttpVersion10}
# The path, and a query of the characters RFC 3986 allows there (anything else,
# a fragment included, is aiohttp's to read).
_TARGET = re.compile(rb"/events(\?[-A-Za-z0-9._~!$&'()*+,;=:@/?%]*)?")
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e]*")
# Headers that make a request more than a plain stream request.
_NOT_PLAIN = ("Content-Length", "Transfer-Encoding", "Expect", "Upgrade")
_CONNECTION_VALUES = ("", "close", "keep-alive")


class StreamRequest:
    """What the stream checks read (``request_view.RequestView``) of a plain request."""

    __slots__ = ("app", "headers", "query", "raw_path", "remote", "version")

    method = "GET"
    cookies: MultiDictProxy[str] = MultiDictProxy(CIMultiDict())

    def __init__(
        self,
        app: web.Application,
        target: str,
        query: MultiDictProxy[str],
        version: HttpVersion,
        headers: CIMultiDictProxy[str],
        remote: str | None,
    ) -> None:
        self.app = app
        self.raw_path = target
        self.query = query
        self.version = version
        self.headers = headers
        self.remote = remote


def parse_plain_request(
    data: bytes, app: web.Application, remote: str | None
) -> StreamRequest | None:
    """``data`` as a plain stream request, or ``None`` if it is anything else."""
    head, end, rest = data.partition(b"\r\n\r\n")
    if not end or rest or len(head) > MAX_HEAD_BYTES:
        return None
    request_line, *lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return None
    target, version = parts[1], _VERSIONS.get(parts[2])
    if version is None or not _TARGET.fullmatch(target):
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            return None
        key = name.decode("ascii")
        if key in headers:
            return None
        headers[key] = value.strip(b" \t").decode("ascii")
    if any(name in headers for name in _NOT_PLAIN):
        return None
    if headers.get("Connection", "").lower() not in _CONNECTION_VALUES:
        return None
    if version == HttpVersion11 and "Host" not in headers:
        return None  # RFC 9112 section 3.2: aiohttp answers 400
    if VERIFIER in app and "Cookie" in headers:
        return None
    text = target.decode("ascii")
    query = URL.build(path=STREAM_PATH, query_string=text[len(STREAM_PATH) + 1 :], encoded=True)
    return StreamRequest(app, text, query.query, version, CIMultiDictProxy(headers), remote)


class FrontDoor(asyncio.Protocol):
    """A new connection, until its first bytes say whether the hub or aiohttp serves it."""

    __slots__ = (
        "_aiohttp",
        "_app",
        "_data",
        "_gone",
        "_head_timeout_s",
        "_opening",
        "_paused",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        aiohttp_server: Callable[[], asyncio.Protocol],
        app: web.Application,
        head_timeout_s: float,
    ) -> None:
        self._aiohttp = aiohttp_server
        self._app = app
        self._head_timeout_s = head_timeout_s
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._opening: asyncio.Task[None] | None = None
        self._data = b""
        self._paused = False
        self._gone = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._timer = asyncio.get_running_loop().call_later(self._head_timeout_s, transport.close)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._opening is not None:
            return  # more bytes while the stream opens: a stream reads nothing after its head
        self._data = data
        request = parse_plain_request(data, self._app, _remote(transport))
        opening = OpeningStream.check(request) if request is not None else None
        if opening is None:
            self._hand_over()
            return
        try:
            opened = opening.open_now()  # a resume, or a head known without a query: no task
        except Exception:
            self._hand_over()  # aiohttp tries again, and answers the problem if it stays
            return
        if opened:
            opening.go_live(transport, paused=self._paused)
        else:
            self._opening = asyncio.get_running_loop().create_task(self._open(opening))

    async def _open(self, opening: OpeningStream) -> None:
        try:
            await opening.open()
        except Exception:
            if not self._gone:
                self._hand_over()  # aiohttp tries again, and answers the problem if it stays
            return
        transport = self._transport
        if self._gone or transport is None or transport.is_closing():
            opening.abandon()
            return
        opening.go_live(transport, paused=self._paused)

    def _hand_over(self) -> None:
        transport = self._transport
        assert transport is not None
        handler = self._aiohttp()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._paused:
            handler.pause_writing()
        data, self._data = self._data, b""
        if data:
            handler.data_received(data)

    def eof_received(self) -> bool:
        return False  # the client has nothing more to say before a request: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False


def _remote(transport: asyncio.Transport) -> str | None:
    """The peer's address, as aiohttp's ``request.remote`` gives it."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, (list, tuple)):
        return str(peer[0])
    return str(peer) if peer is not None else None


class FrontDoorSite(web.BaseSite):
    """A TCP site (on ``host`` and ``port``, or on a bound ``sock``) whose connections meet
    the ``FrontDoor`` first."""

    __slots__ = ("_head_timeout_s", "_host", "_port", "_reuse_port", "_sock")

    def __init__(
        self,
        runner: web.AppRunner,
        *,
        head_timeout_s: float,
        backlog: int = 128,
        host: str | None = None,
        port: int = 0,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._sock = sock
        self._head_timeout_s = head_timeout_s

    @property
    def name(self) -> str:
        if self._sock is not None:
            host, port = self._sock.getsockname()[:2]
            return f"http://{host}:{port}"
        return str(URL.build(scheme="http", host=self._host or "0.0.0.0", port=self._port))

    async def start(self) -> None:
        await super().start()
        runner = self._runner
        assert isinstance(runner, web.AppRunner)
        server, app, timeout_s = runner.server, runner.app, self._head_timeout_s
        assert server is not None

        def door() -> FrontDoor:
            return FrontDoor(server, app, timeout_s)

        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(door, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                door,
                self._host,
                self._port,
                backlog=self._backlog,
                reuse_address=True,
                reuse_port=self._reuse_port or None,
            )
