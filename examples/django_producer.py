"""Publish from a Django transaction: the model save and its event commit together.

    python examples/django_producer.py      # with `make run` in another terminal

A one-file Django set-up for the example; in a project, `publish()` below goes
in any module and `DATABASES` is your own. SSE_HUB_DSN (or DATABASE_URL) is the
hub's database, else the embedded one of `make run` in .sse-hub/.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlsplit

import django
from django.conf import settings

DSN = (
    os.environ.get("SSE_HUB_DSN")
    or os.environ.get("DATABASE_URL")
    or (f"postgresql://postgres@/postgres?host={os.path.abspath('.sse-hub/run')}")
)


def database_from_dsn(dsn: str) -> dict[str, object]:
    url = urlsplit(dsn)
    query = parse_qs(url.query)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/") or "postgres",
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or query.get("host", [""])[0],
        "PORT": str(url.port or query.get("port", [""])[0]),
    }


settings.configure(DATABASES={"default": database_from_dsn(DSN)}, USE_TZ=True)
django.setup()

from django.db import connection, models, transaction  # noqa: E402  (after setup)


class Order(models.Model):
    id = models.BigIntegerField(primary_key=True)

    class Meta:
        app_label = "examples"
        db_table = "example_orders"


def publish(topic: str, data: object, event: str | None = None) -> None:
    """Publish in the current transaction: subscribers see it if and when it commits."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT sse_hub.publish(%s, %s, %s)", [topic, payload, event])


class PaymentDeclined(Exception):
    pass


def place_order(order_id: int, *, declined: bool) -> None:
    try:
        with transaction.atomic():
            Order.objects.create(id=order_id)
            publish(f"orders/{order_id}", {"id": order_id, "via": "django"}, "order.placed")
            if declined:
                raise PaymentDeclined("payment declined")
        print(f"order {order_id}: committed and published")
    except PaymentDeclined as exc:
        print(f"order {order_id}: rolled back ({exc}), nothing was published")


def main() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS example_orders (id bigint PRIMARY KEY)")
    next_id = (Order.objects.aggregate(top=models.Max("id"))["top"] or 0) + 1
    place_order(next_id, declined=False)
    place_order(next_id + 1, declined=True)


if __name__ == "__main__":
    main()
