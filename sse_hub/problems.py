"""Every error leaves the hub as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import functools
import json
import logging

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from sse_hub.errors import (
    HubError,
    RangeNotSatisfiable,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://sse-hub.dev/problems/"
AUTH_REALM = "sse_hub"
# Failures of the database rather than of the request: 503, the client may retry.
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


def problem_response(
    status: int, title: str, detail: str, *, slug: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "type": PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type=PROBLEM_CONTENT_TYPE,
        charset="utf-8",
        headers=headers,
    )


def from_error(error: HubError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(error, ServiceUnavailable | TooManyRequests):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, Unauthorized):
        # RFC 6750, section 3: the challenge, with an error code once a token was sent.
        challenge = f'Bearer realm="{AUTH_REALM}"'
        if error.error:
            challenge += f', error="{error.error}"'
        headers["WWW-Authenticate"] = challenge
    if isinstance(error, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{error.size}"
    return problem_response(
        error.status, error.title, error.detail, slug=error.slug, headers=headers or None
    )


_ANSWERS_OWN_PROBLEMS = "_sse_hub_answers_own_problems"


def answers_own_problems(handler: Handler) -> Handler:
    """Mark a handler that turns its errors into problems itself (with ``problem_for``).

    ``answering_problems`` then leaves it as it is instead of wrapping it in a
    coroutine of its own: a stream lives for hours, and that coroutine would be
    held in memory for all of them, once per open stream.
    """
    setattr(handler, _ANSWERS_OWN_PROBLEMS, True)
    return handler


def answering_problems(handler: Handler) -> Handler:
    """``handler`` with every error it raises answered as a problem (register this one).

    The hub's routes are registered this way instead of behind a middleware: an
    application without middlewares has aiohttp call each handler directly, with
    no chain (and none of aiohttp's own middleware coroutines) around it.
    """
    if answers_own(handler):
        return handler

    @functools.wraps(handler)
    async def answering(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return problem_for(request, exc)

    return answers_own_problems(answering)


def answers_own(handler: Handler) -> bool:
    """Whether ``handler`` answers its own errors as problems."""
    return bool(getattr(handler, _ANSWERS_OWN_PROBLEMS, False))


def problem_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem answering ``exc``; raises it again when it must not become one."""
    if isinstance(exc, HubError):
        return from_error(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or exc.content_type == PROBLEM_CONTENT_TYPE:
            raise exc
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return problem_response(exc.status, exc.reason, detail or exc.reason, headers=headers)
    if isinstance(exc, ConnectionError):
        raise exc  # the client went away: nothing to answer
    if request.writer.output_size > 0:
        raise exc  # a response is under way (a stream): it cannot become a problem now
    if isinstance(exc, DATABASE_ERRORS):
        log.warning("%s %s: the database is unreachable (%s)", request.method, request.path, exc)
        unavailable = ServiceUnavailable("the database is unreachable; try again", retry_after_s=5)
        return from_error(unavailable)
    # A bug of ours: the client still gets a problem, the log gets the traceback.
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return problem_response(
        500, "Internal Server Error", "the hub failed to handle this request; see its log"
    )
