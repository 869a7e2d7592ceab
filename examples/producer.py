"""Publish over HTTP, and from SQL inside a business transaction.

    python examples/producer.py          # with `make run` in another terminal

HUB is the hub's address (default http://127.0.0.1:8080); SSE_HUB_DSN (or
DATABASE_URL) the database, else the embedded one of `make run` in .sse-hub/.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import asyncpg

import sse_hub
from sse_hub.embedded_pg import EmbeddedPostgres

HUB = os.environ.get("HUB", "http://127.0.0.1:8080")
DSN = (
    os.environ.get("SSE_HUB_DSN")
    or os.environ.get("DATABASE_URL")
    or EmbeddedPostgres(Path(".sse-hub")).dsn
)


def publish_over_http(topic: str, data: object) -> int:
    body = json.dumps({"topic": topic, "data": data}).encode()
    request = urllib.request.Request(
        HUB + "/events", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["id"])


async def place_order(conn: asyncpg.Connection, order_id: int, *, fail: bool) -> None:
    """Insert an order and publish orders/<id> atomically: both or neither."""
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO example_orders (id) VALUES ($1)", order_id)
            await sse_hub.publish_in_transaction(
                conn, f"orders/{order_id}", {"id": order_id, "status": "placed"}, "order.placed"
            )
            if fail:
                raise RuntimeError("payment declined")
        print(f"order {order_id}: committed, subscribers of orders/* see it now")
    except RuntimeError as exc:
        print(f"order {order_id}: rolled back ({exc}), nothing was published")


async def main() -> None:
    event_id = publish_over_http("demo", {"hello": "from producer.py"})
    print(f"published over HTTP as id {event_id}")
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS example_orders (id bigint PRIMARY KEY)")
        next_id = await conn.fetchval("SELECT coalesce(max(id), 0) + 1 FROM example_orders")
        await place_order(conn, next_id, fail=False)
        await place_order(conn, next_id + 1, fail=True)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
