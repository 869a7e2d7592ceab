"""Publish from a SQLAlchemy 2 session: the ORM write and its event commit together.

    python examples/sqlalchemy_producer.py  # with `make run` in another terminal

SSE_HUB_DSN (or DATABASE_URL) is the hub's database, else the embedded one of
`make run` in .sse-hub/. `publish()` below is all an application needs: it runs
`sse_hub.publish()` in the session's transaction, so a rollback publishes nothing.
"""

from __future__ import annotations

import json
import os

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

DSN = (
    os.environ.get("SSE_HUB_DSN")
    or os.environ.get("DATABASE_URL")
    or (f"postgresql://postgres@/postgres?host={os.path.abspath('.sse-hub/run')}")
)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "example_orders"
    id: Mapped[int] = mapped_column(primary_key=True)


def publish(session: Session, topic: str, data: object, event: str | None = None) -> None:
    """Publish in the session's transaction: subscribers see it if and when it commits."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    session.execute(
        text("SELECT sse_hub.publish(:topic, :data, :event)"),
        {"topic": topic, "data": payload, "event": event},
    )


def place_order(session: Session, order_id: int, *, declined: bool) -> None:
    session.add(Order(id=order_id))
    publish(session, f"orders/{order_id}", {"id": order_id, "via": "sqlalchemy"}, "order.placed")
    if declined:
        session.rollback()
        print(f"order {order_id}: rolled back (payment declined), nothing was published")
    else:
        session.commit()
        print(f"order {order_id}: committed and published")


def main() -> None:
    # psycopg 3 as the driver: postgresql:// URLs would pick psycopg2.
    engine = create_engine(make_url(DSN).set(drivername="postgresql+psycopg"))
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        next_id = session.scalar(select(func.coalesce(func.max(Order.id), 0) + 1))
        assert next_id is not None
        place_order(session, next_id, declined=False)
        place_order(session, next_id + 1, declined=True)
    engine.dispose()


if __name__ == "__main__":
    main()
