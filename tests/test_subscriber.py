from __future__ import annotations

import asyncio

from sse_hub.events import TopicPattern
from sse_hub.subscriber import State, Subscriber

PATTERNS = (TopicPattern("a"),)


def make(limit: int = 100, position: int = 0, live: bool = True) -> Subscriber:
    return Subscriber(PATTERNS, position=position, live=live, buffer_limit_bytes=limit)


def test_offer_queues_in_order_and_take_joins() -> None:
    sub = make()
    assert sub.offer(1, b"one")
    assert sub.offer(2, b"two")
    assert sub.take() == b"onetwo"
    assert sub.take() == b""
    assert sub.position == 2


def test_offer_ignores_ids_already_covered() -> None:
    sub = make(position=5)
    assert not sub.offer(5, b"dup")
    assert not sub.offer(3, b"old")
    assert sub.offer(6, b"new")
    assert sub.take() == b"new"


def test_overflow_falls_behind_and_keeps_position_of_last_queued() -> None:
    sub = make(limit=10)
    assert sub.offer(1, b"12345")
    assert sub.offer(2, b"12345")
    assert not sub.offer(3, b"x")
    assert sub.state is State.BEHIND
    assert sub.position == 2  # event 3 will be read from the store
    assert sub.overflows == 1
    assert not sub.offer(4, b"y")  # behind: nothing more is queued
    assert sub.take() == b"1234512345"


def test_behind_subscriber_ignores_offers_until_live() -> None:
    sub = make(live=False, position=3)
    assert not sub.offer(4, b"x")
    sub.go_live(10)
    assert sub.state is State.LIVE
    assert not sub.offer(10, b"old")
    assert sub.offer(11, b"new")


async def test_wait_wakes_on_offer_and_times_out() -> None:
    sub = make()
    assert not await sub.wait(0.01)
    waiter = asyncio.create_task(sub.wait(30))
    await asyncio.sleep(0)
    sub.offer(1, b"x")
    assert await asyncio.wait_for(waiter, 5)


async def test_close_wakes_waiter() -> None:
    sub = make()
    waiter = asyncio.create_task(sub.wait(30))
    await asyncio.sleep(0)
    sub.close("shutdown")
    assert await asyncio.wait_for(waiter, 5)
    assert sub.state is State.CLOSED
    assert sub.close_reason == "shutdown"
    assert not sub.offer(5, b"x")
