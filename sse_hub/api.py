"""Using the hub from Python code: inside an existing aiohttp app, and from SQL transactions.

Mount the hub in your application and publish from your handlers::

    hub_app = sse_hub.create_app(sse_hub.Settings(dsn=DSN))
    app.add_subapp("/realtime", hub_app)   # streams, publish, files, dashboard under /realtime
    ...
    event_id = await sse_hub.hub_of(hub_app).publish("orders/42", {"status": "paid"})

The parent application starts and stops the hub with its own lifecycle. To
publish atomically with your own writes, call ``publish_in_transaction`` on the
asyncpg connection of your transaction: subscribers see the event if and when
it commits.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sse_hub.config import DEFAULT_MAX_DATA_BYTES
from sse_hub.events import new_event
from sse_hub.hub import Hub
from sse_hub.keys import HUB


def hub_of(app: web.Application) -> Hub:
    """The running hub of an application made by ``create_app`` (after start-up)."""
    try:
        return app[HUB]
    except KeyError:
        raise RuntimeError("the hub starts with its application; use it after start-up") from None


async def publish_in_transaction(
    conn: Any,
    topic: str,
    data: object,
    event: str | None = None,
    *,
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
) -> None:
    """Publish inside the caller's transaction on an asyncpg connection.

    The event gets its id when the transaction commits (so there is none to
    return); a rollback publishes nothing. Validation is the HTTP API's.
    """
    checked = new_event(topic, data, event, max_data_bytes=max_data_bytes)
    await conn.execute(
        "SELECT sse_hub.publish($1, $2, $3)", checked.topic, checked.data, checked.event
    )
