"""What no route answers: a method a path does not take (405), a path nothing serves (404).

Both are problems (RFC 9457), and both are routes rather than a middleware.
With no middleware at all, aiohttp calls each handler directly: an open stream
holds no middleware coroutine for its whole life (aiohttp adds one of its own
to every request once an application has any middleware), and no request
passes through a chain. A CORS preflight, an ``OPTIONS`` that no route takes,
is answered here too.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from sse_hub.cors import preflight_answer
from sse_hub.problems import answers_own_problems, problem_response

CATCH_ALL_PATH = "/{sse_hub_unrouted:.*}"


def add_fallbacks(app: web.Application) -> None:
    """Give each resource of ``app`` a 405 for other methods, and ``app`` a 404; call it last."""
    for resource in list(app.router.resources()):
        if isinstance(resource, web.Resource):  # not a mounted sub-application
            allowed = ", ".join(sorted({route.method for route in resource}))
            resource.add_route(hdrs.METH_ANY, _method_not_allowed(allowed))
    app.router.add_route(hdrs.METH_ANY, CATCH_ALL_PATH, _not_found)


def _method_not_allowed(allowed: str) -> Handler:
    @answers_own_problems
    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        preflight = preflight_answer(request)
        if preflight is not None:
            return preflight
        return problem_response(
            405,
            "Method Not Allowed",
            f"{request.method} is not allowed here; this path takes {allowed}",
            headers={hdrs.ALLOW: allowed},
        )

    return method_not_allowed


@answers_own_problems
async def _not_found(request: web.Request) -> web.StreamResponse:
    preflight = preflight_answer(request)
    if preflight is not None:
        return preflight
    return problem_response(404, "Not Found", "nothing is served at this path")
