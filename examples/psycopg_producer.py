"""Publish from a psycopg 3 transaction: the order and its event commit together.

    python examples/psycopg_producer.py     # with `make run` in another terminal

SSE_HUB_DSN (or DATABASE_URL) is the hub's database, else the embedded one of
`make run` in .sse-hub/. Subscribers of orders/* see the placed order when the
transaction commits; the declined one rolls back and publishes nothing.
"""

from __future__ import annotations

import json
import os

import psycopg

DSN = (
    os.environ.get("SSE_HUB_DSN")
    or os.environ.get("DATABASE_URL")
    or (f"host={os.path.abspath('.sse-hub/run')} user=postgres dbname=postgres")
)


class PaymentDeclined(Exception):
    pass


def place_order(conn: psycopg.Connection, order_id: int, *, declined: bool) -> None:
    try:
        with conn.transaction():
            conn.execute("INSERT INTO example_orders (id) VALUES (%s)", (order_id,))
            conn.execute(
                "SELECT sse_hub.publish(%s, %s, %s)",
                (
                    f"orders/{order_id}",
                    json.dumps({"id": order_id, "via": "psycopg"}, separators=(",", ":")),
                    "order.placed",
                ),
            )
            if declined:
                raise PaymentDeclined("payment declined")
        print(f"order {order_id}: committed and published")
    except PaymentDeclined as exc:
        print(f"order {order_id}: rolled back ({exc}), nothing was published")


def main() -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS example_orders (id bigint PRIMARY KEY)")
        next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM example_orders").fetchone()
        assert next_id is not None
        place_order(conn, next_id[0], declined=False)
        place_order(conn, next_id[0] + 1, declined=True)


if __name__ == "__main__":
    main()
