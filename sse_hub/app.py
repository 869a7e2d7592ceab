"""Wiring: the aiohttp application, its routes and the lifecycle of its resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from sse_hub.auth import VERIFIER, Verifier
from sse_hub.config import Settings, load_settings
from sse_hub.cors import add_cors
from sse_hub.dashboard import add_dashboard
from sse_hub.database import Database, open_database
from sse_hub.downloads import check_files_dir, serve_file
from sse_hub.fallbacks import add_fallbacks
from sse_hub.hub import Hub
from sse_hub.keys import HUB, LIVE_STREAMS
from sse_hub.live import LiveStreams
from sse_hub.metrics import add_metrics
from sse_hub.migrate import migrate_dsn
from sse_hub.ops import healthz
from sse_hub.problems import answering_problems
from sse_hub.publish import publish_events
from sse_hub.stream import stream_events
from sse_hub.throttle import THROTTLE, Throttle

log = logging.getLogger(__name__)


async def prepare_database(settings: Settings) -> Database:
    """The hub's database (``database.open_database``), migrated.

    The database also learns ``--max-data``, so SQL producers get the same limit.
    """
    database = await open_database(settings)
    try:
        applied = await migrate_dsn(database.dsn, max_data_bytes=settings.max_data_bytes)
    except BaseException:
        await database.close()
        raise
    for name in applied:
        log.info("applied migration %s", name)
    return database


def check_startup(settings: Settings) -> Verifier | None:
    """What the settings name outside themselves (the public key file, ``--files-dir``).

    Raises ``ConfigError`` naming the flag; returns the token verifier, if any.
    """
    check_files_dir(settings)
    return Verifier.from_settings(settings)


def create_app(settings: Settings) -> web.Application:
    """The hub as an aiohttp application; mountable with ``add_subapp``.

    Raises ``ConfigError`` for a public key it cannot use or a ``--files-dir``
    that is not a directory. Its database starts with the application, without
    blocking the event loop.
    """
    verifier = check_startup(settings)
    # No middleware: errors are answered by each route (``answering_problems``) and
    # by the fallback routes, so aiohttp calls handlers without a chain around them.
    app = web.Application(client_max_size=settings.max_body_bytes)
    if verifier is not None:
        app[VERIFIER] = verifier
    app[THROTTLE] = Throttle(settings)
    app[LIVE_STREAMS] = LiveStreams()
    add_cors(app, settings.cors_origins)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        database = await prepare_database(settings)
        try:
            hub = await Hub.start(settings, database.dsn)
            app[HUB] = hub
            try:
                yield
            finally:
                await hub.close()
        finally:
            await database.close()

    async def end_streams(app: web.Application) -> None:
        if HUB in app:
            app[HUB].broker.close("shutdown")
        await app[LIVE_STREAMS].close()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)
    app.router.add_get("/events", answering_problems(stream_events))
    app.router.add_post("/events", answering_problems(publish_events))
    app.router.add_get("/healthz", answering_problems(healthz))
    add_metrics(app)
    app.router.add_get("/files/{path:.*}", answering_problems(serve_file))
    add_dashboard(app)
    add_fallbacks(app)
    return app


def app_from_environment() -> web.Application:
    """The hub configured by ``SSE_HUB_*`` variables alone (for gunicorn and other runners).

    ``gunicorn 'sse_hub.app:app_from_environment()' --worker-class aiohttp.GunicornWebWorker``
    """
    return create_app(load_settings({}))
