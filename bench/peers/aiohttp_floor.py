"""The least an aiohttp ``POST /events`` can cost: read and parse the JSON, answer 201.

No database, no validation, no authorisation, no access log: what is left is
aiohttp's own request and response handling on uvloop, which every aiohttp
service pays. ``python -m bench.floors publish`` measures it with the bench's
load client, to set the hub's publish figures against.
"""

from __future__ import annotations

import itertools
import json
import sys

import uvloop
from aiohttp import web

_ids = itertools.count(1)


async def publish(request: web.Request) -> web.Response:
    json.loads(await request.read())
    return web.json_response({"id": next(_ids)}, status=201)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/events", publish)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        loop=uvloop.new_event_loop(),
        print=None,
    )


if __name__ == "__main__":
    main()
