from __future__ import annotations

import asyncio

from sse_hub.events import TopicPattern
from sse_hub.frames import Encoded
from sse_hub.subscriber import State, Subscriber

PATTERNS = (TopicPattern("a"),)


class RecordingSink:
    """An in-memory sink: what a subscriber wrote (one entry per write), and a backlog we set."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.backlog = 0
        self.closing = False
        self.bytes_sent = 0

    def write(self, frames: bytes) -> None:
        self.writes.append(frames)
        self.bytes_sent += len(frames)

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    def pending_bytes(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closing


def ev(event_id: int, data: bytes) -> Encoded:
    return Encoded(event_id, "a", data)


def make(limit: int = 100, position: int = 0, live: bool = True) -> Subscriber:
    return Subscriber(PATTERNS, position=position, live=live, buffer_limit_bytes=limit)


def attached(limit: int = 100, position: int = 0) -> tuple[Subscriber, RecordingSink]:
    sub, sink = make(limit, position), RecordingSink()
    sub.attach(sink, 0.0)
    return sub, sink


def test_a_batch_is_one_write_of_the_shared_frames() -> None:
    sub, sink = attached()
    assert sub.offer(ev(1, b"one"))
    assert sub.offer(ev(2, b"two"))
    sub.flush(1.0)
    assert sink.writes == [b"onetwo"]
    assert sub.position == 2
    assert sub.last_write_s == 1.0
    assert sub.bytes_sent == 6


def test_a_single_frame_is_handed_over_as_the_same_object() -> None:
    sub, sink = attached()
    frame = b"id: 1\ndata: x\n\n"
    assert sub.offer(Encoded(1, "a", frame))
    sub.flush(1.0)
    assert sink.writes[0] is frame  # encoded once, for every subscriber


def test_offer_ignores_ids_already_covered() -> None:
    sub, sink = attached(position=5)
    assert not sub.offer(ev(5, b"dup"))
    assert not sub.offer(ev(3, b"old"))
    assert sub.offer(ev(6, b"new"))
    sub.flush(1.0)
    assert sink.written == b"new"


def test_frames_wait_for_the_sink_within_the_limit() -> None:
    sub = make(limit=10)
    assert sub.offer(ev(1, b"12345"))
    sub.flush(1.0)  # no sink yet: kept
    assert sub.offer(ev(2, b"12345"))
    assert not sub.offer(ev(3, b"x"))
    assert sub.state is State.BEHIND
    assert sub.position == 2  # event 3 will be read from the store
    assert sub.overflows == 1
    assert not sub.offer(ev(4, b"y"))  # behind: nothing more is queued
    sink = RecordingSink()
    sub.attach(sink, 2.0)
    assert sink.writes == [b"1234512345"]


def test_sink_backlog_counts_against_the_limit() -> None:
    sub, sink = attached(limit=100)
    sink.backlog = 95
    assert not sub.offer(ev(1, b"x" * 10))
    assert sub.state is State.BEHIND
    assert sub.position == 0
    assert sink.writes == []
    assert sub.buffered_bytes == 95


def test_closing_sink_closes_the_subscriber() -> None:
    sub, sink = attached()
    sink.closing = True
    assert sub.offer(ev(1, b"x"))
    sub.flush(1.0)
    assert sub.state is State.CLOSED
    assert sub.close_reason == "gone"
    assert sink.writes == []


def test_behind_subscriber_ignores_offers_until_live() -> None:
    sub = make(live=False, position=3)
    assert not sub.offer(ev(4, b"x"))
    sub.go_live(10)
    assert sub.state is State.LIVE
    assert not sub.offer(ev(10, b"old"))
    assert sub.offer(ev(11, b"new"))


def test_beat_only_when_silent_and_drained() -> None:
    sub, sink = attached()
    assert not sub.beat(4.0, 5.0, b"HB")  # written to at 0.0
    sink.backlog = 1
    assert not sub.beat(6.0, 5.0, b"HB")  # still sending: not silent
    sink.backlog = 0
    assert sub.beat(6.0, 5.0, b"HB")
    assert sink.writes == [b"HB"]
    assert sub.last_write_s == 6.0
    assert not make().beat(100.0, 5.0, b"HB")  # no sink: nothing to beat


async def test_changed_resolves_on_overflow_and_close_only() -> None:
    sub, sink = attached(limit=10)
    changed = sub.changed()
    assert sub.offer(ev(1, b"x"))
    sub.flush(1.0)  # written by the broker: nothing for the stream's own loop
    await asyncio.sleep(0)
    assert not changed.done()
    sink.backlog = 10
    assert not sub.offer(ev(2, b"y"))  # over the limit: falls behind
    await asyncio.wait_for(changed, 5)
    assert sub.state is State.BEHIND
    assert sub.changed().done()  # not live: nothing to wait for
    sub.go_live(2)
    waiting = sub.changed()
    sub.close("shutdown")
    await asyncio.wait_for(waiting, 5)
    assert sub.close_reason == "shutdown"
    assert not sub.offer(ev(5, b"x"))
