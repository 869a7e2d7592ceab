from __future__ import annotations

import asyncio

from sse_hub.broker import Encoded
from sse_hub.events import TopicPattern
from sse_hub.subscriber import State, Subscriber

PATTERNS = (TopicPattern("a"),)


class RecordingTransport:
    """An in-memory write target: what a subscriber wrote, and a backlog we control."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.backlog = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closing


def ev(event_id: int, data: bytes) -> Encoded:
    return Encoded.of(event_id, "a", data)


def make(
    limit: int = 100,
    position: int = 0,
    live: bool = True,
    transport: RecordingTransport | None = None,
) -> Subscriber:
    return Subscriber(
        PATTERNS, position=position, live=live, buffer_limit_bytes=limit, transport=transport
    )


def test_encoded_chunk_is_the_frame_as_one_http_chunk() -> None:
    assert Encoded.of(1, "a", b"id: 1\ndata: x\n\n").chunk == b"f\r\nid: 1\ndata: x\n\n\r\n"


def test_offer_keeps_in_order_and_take_joins() -> None:
    sub = make()
    assert sub.offer(ev(1, b"one"))
    assert sub.offer(ev(2, b"two"))
    assert sub.take() == b"onetwo"
    assert sub.take() == b""
    assert sub.position == 2


def test_offer_ignores_ids_already_covered() -> None:
    sub = make(position=5)
    assert not sub.offer(ev(5, b"dup"))
    assert not sub.offer(ev(3, b"old"))
    assert sub.offer(ev(6, b"new"))
    assert sub.take() == b"new"


def test_overflow_falls_behind_and_keeps_position_of_last_queued() -> None:
    sub = make(limit=10)
    assert sub.offer(ev(1, b"12345"))
    assert sub.offer(ev(2, b"12345"))
    assert not sub.offer(ev(3, b"x"))
    assert sub.state is State.BEHIND
    assert sub.position == 2  # event 3 will be read from the store
    assert sub.overflows == 1
    assert not sub.offer(ev(4, b"y"))  # behind: nothing more is queued
    assert sub.take() == b"1234512345"


def test_transport_gets_chunks_at_flush_once_ready() -> None:
    transport = RecordingTransport()
    sub = make(transport=transport)
    assert sub.offer(ev(1, b"one"))
    sub.flush(1.0)
    assert transport.written == b""  # headers not out yet: kept
    sub.ready(2.0)
    assert transport.written == b"3\r\none\r\n"
    assert sub.offer(ev(2, b"two"))
    assert sub.offer(ev(3, b"three"))
    sub.flush(3.0)
    assert transport.written == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n"
    assert sub.last_write_s == 3.0
    assert sub.take() == b""


def test_transport_backlog_counts_against_the_limit() -> None:
    transport = RecordingTransport()
    sub = make(limit=100, transport=transport)
    sub.ready(0.0)
    transport.backlog = 95
    assert not sub.offer(ev(1, b"x" * 10))
    assert sub.state is State.BEHIND
    assert sub.position == 0
    assert transport.written == b""


def test_closing_transport_closes_the_subscriber() -> None:
    transport = RecordingTransport()
    sub = make(transport=transport)
    sub.ready(0.0)
    transport.closing = True
    assert sub.offer(ev(1, b"x"))
    sub.flush(1.0)
    assert sub.state is State.CLOSED
    assert sub.close_reason == "gone"
    assert transport.written == b""


def test_behind_subscriber_ignores_offers_until_live() -> None:
    sub = make(live=False, position=3)
    assert not sub.offer(ev(4, b"x"))
    sub.go_live(10)
    assert sub.state is State.LIVE
    assert not sub.offer(ev(10, b"old"))
    assert sub.offer(ev(11, b"new"))


async def test_wait_wakes_on_flush_and_times_out() -> None:
    sub = make()
    await asyncio.wait_for(sub.wait(0.01), 5)  # times out quietly
    waiter = asyncio.create_task(sub.wait(30))
    await asyncio.sleep(0)
    sub.offer(ev(1, b"x"))
    sub.flush(0.0)
    await asyncio.wait_for(waiter, 5)
    assert sub.take() == b"x"


async def test_close_wakes_waiter() -> None:
    sub = make()
    waiter = asyncio.create_task(sub.wait(30))
    await asyncio.sleep(0)
    sub.close("shutdown")
    await asyncio.wait_for(waiter, 5)
    assert sub.state is State.CLOSED
    assert sub.close_reason == "shutdown"
    assert not sub.offer(ev(5, b"x"))


async def test_changed_resolves_on_overflow_and_close_only() -> None:
    transport = RecordingTransport()
    sub = make(limit=10, transport=transport)
    sub.ready(0.0)
    changed = sub.changed()
    assert sub.offer(ev(1, b"x"))
    sub.flush(1.0)  # written by the broker: nothing for the stream's own loop
    await asyncio.sleep(0)
    assert not changed.done()
    transport.backlog = 10
    assert not sub.offer(ev(2, b"y"))  # over the limit: falls behind
    await asyncio.wait_for(changed, 5)
    assert sub.state is State.BEHIND
    assert sub.changed().done()  # not live: nothing to wait for
    sub.go_live(2)
    waiting = sub.changed()
    sub.close("shutdown")
    await asyncio.wait_for(waiting, 5)


async def test_changed_is_done_at_once_when_frames_are_kept() -> None:
    sub = make()  # no transport: frames wait for take()
    assert sub.offer(ev(1, b"x"))
    assert sub.changed().done()
