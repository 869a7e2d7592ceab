"""Operations endpoints: ``GET /healthz``.

``NO_STORE`` goes on every operations answer (``/healthz``, ``/metrics``): they
describe this moment, and a cache that kept one would report a hub that is gone.
"""

from __future__ import annotations

from aiohttp import web

from sse_hub.hub import Hub
from sse_hub.keys import HUB

NO_STORE = {"Cache-Control": "no-store"}


async def healthz(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    database_ok = await hub.database_ok()
    relay = hub.relay
    body = {
        "status": "ok" if database_ok and relay.connected else "degraded",
        "database": "ok" if database_ok else "unreachable",
        "listener": "connected" if relay.connected else "reconnecting",
        "last_event_id": hub.broker.last_id,
        "relay_lag_seconds": round(relay.lag_s, 3),
        "streams": hub.counters.streams_open,
    }
    if relay.last_error and not relay.connected:
        body["listener_error"] = relay.last_error
    return web.json_response(body, status=200 if database_ok else 503, headers=NO_STORE)
