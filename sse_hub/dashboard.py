"""``GET /``: the live dashboard, static files shipped in the package.

The page uses only relative URLs, so it works wherever the hub is mounted
(``/`` or ``/realtime/``), and makes no request outside the hub: it reads
``/events`` with ``fetch`` (``static/sse.js``), and polls ``/metrics`` (or
``/healthz`` when a metrics token guards it) for its charts. The policy below
keeps it that way: scripts, styles and connections from the hub's origin only,
nothing inline.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from sse_hub.problems import answering_problems

_FILES = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "sse.js": "text/javascript",
    "charts.js": "text/javascript",
    "dashboard.css": "text/css",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, bytes]:
    folder = resources.files("sse_hub") / "static"
    return {name: (folder / name).read_bytes() for name in _FILES}


def add_dashboard(app: web.Application) -> None:
    files = _load()

    def respond(name: str) -> web.Response:
        return web.Response(
            body=files[name],
            content_type=_FILES[name],
            charset="utf-8",
            headers=_SECURITY_HEADERS,
        )

    async def index(request: web.Request) -> web.Response:
        return respond("index.html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files or name == "index.html":
            raise web.HTTPNotFound()
        return respond(name)

    app.router.add_get("/", answering_problems(index))
    app.router.add_get("/static/{name}", answering_problems(static))
