"""Access logs: one ``key=value`` line per request, and one per stream when it closes.

::

    method=GET path="/events?topic=a&access_token=REDACTED" status=200 bytes=5120
    duration_ms=61234.5 remote=203.0.113.9 closed=client

``bytes`` is what was sent, headers included (aiohttp's ``%b``); ``remote`` the
peer, with ``forwarded_for`` when a proxy said more. ``closed`` (streams only)
says who ended it: ``client``, ``shutdown``, ``slow`` (write timeout) or
``gone`` (found closed by the fan-out).

aiohttp logs a request when its handler returns, but a stream outlives its
handler (``live.py``). So streams log themselves when they close
(``log_stream``, with how they ended) and the access logger skips them. Tokens in the query
string never reach the log; headers and cookies are never logged at all.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from sse_hub.auth import TOKEN_QUERY
from sse_hub.request_view import RequestLine
from sse_hub.sink import EventStreamResponse

ACCESS_LOGGER_NAME = "sse_hub.access"
REDACTED = "REDACTED"
MAX_PATH_CHARS = 2048
MAX_REASON_CHARS = 200

access_log = logging.getLogger(ACCESS_LOGGER_NAME)


def redact(path_qs: str) -> str:
    """``path_qs`` with the value of every ``access_token`` (however encoded) replaced."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path
    pairs = []
    for pair in query.split("&"):
        key = pair.partition("=")[0]
        if unquote_plus(key) == TOKEN_QUERY:
            pair = key + "=" + REDACTED
        pairs.append(pair)
    return path + "?" + "&".join(pairs)


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in escaped) + '"'


def request_parts(request: RequestLine) -> tuple[str, str]:
    """What an access line says of the request: the fields before and after the outcome."""
    method = request.method
    before = (
        f"method={method if method.isalpha() else _quoted(method)}"
        f" path={_quoted(redact(request.raw_path)[:MAX_PATH_CHARS])}"
    )
    after = f"remote={request.remote or '-'}"
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        after += f" forwarded_for={_quoted(forwarded[:MAX_PATH_CHARS])}"
    return before, after


def format_line(
    parts: tuple[str, str],
    *,
    status: int,
    size: int,
    duration_s: float,
    closed: str | None = None,
) -> str:
    before, after = parts
    line = f"{before} status={status} bytes={size} duration_ms={duration_s * 1000:.1f} {after}"
    return f"{line} closed={closed}" if closed else line


def log_stream(parts: tuple[str, str], *, size: int, duration_s: float, closed: str) -> None:
    """The access line of a stream, written when it closes (whatever closed it).

    ``parts`` are ``request_parts`` of its request, taken when it started: a
    running stream keeps no request.
    """
    access_log.info(format_line(parts, status=200, size=size, duration_s=duration_s, closed=closed))


class AccessLogger(AbstractAccessLogger):
    """aiohttp's hook: ``web.run_app(..., access_log_class=AccessLogger)``."""

    __slots__ = ()  # one per connection: no instance dict

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if isinstance(response, EventStreamResponse):
            return  # logged by the stream itself when it closed
        self.logger.info(
            format_line(
                request_parts(request),
                status=response.status,
                size=response.body_length,
                duration_s=time,
            )
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class MalformedRequestFilter(logging.Filter):
    """One INFO line, not an ERROR with a traceback, for each request that is not HTTP.

    aiohttp logs every unparsable request with its traceback. On the open
    internet that is scanners and attackers writing our error log; the line
    stays (an operator should see them), the traceback goes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and isinstance(record.args, tuple):
            reason = " ".join(str(error.message).split())[:MAX_REASON_CHARS]
            record.msg = f"{record.msg} (refused as malformed: %s)"
            record.args = (*record.args, reason)
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info, record.exc_text = None, None
        return True
