"""CORS, so dashboards on other origins can stream, publish and read errors.

``--cors-origin https://app.example`` (repeatable) allows exact origins: the
answer echoes the request's ``Origin`` with ``Vary: Origin`` and allows
credentials (cookies, so ``EventSource(url, {withCredentials: true})`` can carry
the ``sse_hub_token`` cookie). ``--cors-origin '*'`` allows any origin without
credentials (browsers refuse ``*`` with credentials anyway). Headers go on every
response as it is prepared, streams and problem answers included, so a page can
read why it was refused. A preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an allowed origin gets ``204``; from any
other origin ``403``.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from sse_hub.problems import problem_response

ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
# What a page's script may read besides the CORS-safelisted response headers.
EXPOSE_HEADERS = (
    "Retry-After, WWW-Authenticate, Content-Range, Content-Disposition, ETag, Accept-Ranges"
)
PREFLIGHT_MAX_AGE_S = 600
ANY_ORIGIN = "*"


class CorsPolicy:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = ANY_ORIGIN in origins
        self.exact = frozenset(origin.lower() for origin in origins if origin != ANY_ORIGIN)

    def headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers for a response to a request from ``origin``."""
        if origin is not None and origin.lower() in self.exact:
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": EXPOSE_HEADERS,
            }
        if self.any:
            return {
                "Access-Control-Allow-Origin": ANY_ORIGIN,
                "Access-Control-Expose-Headers": EXPOSE_HEADERS,
            }
        return {}

    def allows(self, origin: str) -> bool:
        return self.any or origin.lower() in self.exact


def preflight_response(policy: CorsPolicy, origin: str) -> web.Response:
    if not policy.allows(origin):
        return problem_response(
            403, "Forbidden", f"the origin {origin} is not allowed (see --cors-origin)"
        )
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        },
    )


CORS_POLICY = web.AppKey("sse_hub.cors_policy", CorsPolicy)


def cors_headers(policy: CorsPolicy, origin: str | None) -> dict[str, str]:
    """The CORS headers of an answer to ``origin`` that has no ``Vary`` of its own."""
    headers = policy.headers(origin)
    if policy.exact:  # the answer depends on the Origin: tell caches
        headers["Vary"] = "Origin"
    return headers


def preflight_answer(request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight, or ``None`` if this is none (or CORS is off).

    No route takes ``OPTIONS``, so a preflight reaches the fallback routes
    (``sse_hub.fallbacks``), which ask here first.
    """
    policy = request.app.get(CORS_POLICY)
    origin = request.headers.get("Origin")
    if (
        policy is None
        or request.method != hdrs.METH_OPTIONS
        or origin is None
        or "Access-Control-Request-Method" not in request.headers
    ):
        return None
    return preflight_response(policy, origin)


def add_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    """Install the policy on ``app``; nothing at all when no origin is configured."""
    if not origins:
        return
    policy = CorsPolicy(origins)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = cors_headers(policy, request.headers.get("Origin"))
        vary = response.headers.get("Vary")
        if vary is not None and "Vary" in headers:
            headers["Vary"] = vary if "origin" in vary.lower() else vary + ", Origin"
        response.headers.update(headers)

    app[CORS_POLICY] = policy
    app.on_response_prepare.append(add_headers)
