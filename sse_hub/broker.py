"""Fan-out: hand each encoded event to the subscribers whose patterns match its topic.

The relay feeds the broker; the broker never awaits anyone. Finding the
subscribers of a topic costs a few dictionary lookups (the exact topic, each
``prefix/`` of it, and ``*``), not a scan of every subscriber, so thousands of
subscribers on other topics cost nothing per event.

``last_id`` is the highest id dispatched so far: every event up to it has been
offered to every subscriber that was live at the time, and an event at or below
it is never dispatched again (a relay read may overlap what went out at
commit). A subscriber reading history from the store joins live delivery once
it has covered ``last_id``. The newest dispatched events are also kept in
``recent``, so that a resume of recent history needs no query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from sse_hub.config import DEFAULT_HEARTBEAT_S
from sse_hub.frames import Encoded
from sse_hub.heartbeats import HeartbeatWheel
from sse_hub.recent import RecentEvents
from sse_hub.subscriber import State, Subscriber


class Broker(Protocol):
    last_id: int
    recent: RecentEvents  # what was dispatched lately, for resumes (``recent.py``)

    def subscribe(self, subscriber: Subscriber) -> None: ...

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget ``subscriber``; nothing happens if it is not subscribed."""
        ...

    def dispatch(self, events: Sequence[Encoded]) -> int: ...

    def try_go_live(self, subscriber: Subscriber, covered_through: int) -> bool: ...

    def close(self, reason: str) -> None: ...

    def beat(self, now_s: float, heartbeat: bytes) -> int: ...

    def __len__(self) -> int: ...


class TopicIndex:
    """Subscribers keyed by what they listen to: exact topics, prefixes and ``*``."""

    def __init__(self) -> None:
        self._exact: dict[str, set[Subscriber]] = {}
        self._prefix: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()

    def add(self, subscriber: Subscriber) -> None:
        for pattern in subscriber.patterns:
            self._bucket(pattern.text, create=True).add(subscriber)  # type: ignore[union-attr]

    def remove(self, subscriber: Subscriber) -> None:
        for pattern in subscriber.patterns:
            bucket = self._bucket(pattern.text, create=False)
            if bucket is None:
                continue
            bucket.discard(subscriber)
            if not bucket and bucket is not self._everything:
                self._drop(pattern.text)

    def matching(self, topic: str) -> Iterator[set[Subscriber]]:
        """The buckets whose subscribers match ``topic`` (a subscriber may be in several)."""
        if self._everything:
            yield self._everything
        bucket = self._exact.get(topic)
        if bucket:
            yield bucket
        if self._prefix:
            start = 0
            while True:
                slash = topic.find("/", start)
                if slash < 0 or slash == len(topic) - 1:
                    break
                bucket = self._prefix.get(topic[: slash + 1])
                if bucket:
                    yield bucket
                start = slash + 1

    def all(self) -> Iterable[Subscriber]:
        seen: set[Subscriber] = set(self._everything)
        for buckets in (self._exact, self._prefix):
            for bucket in buckets.values():
                seen |= bucket
        return seen

    def _bucket(self, text: str, *, create: bool) -> set[Subscriber] | None:
        if text == "*":
            return self._everything
        table, key = (self._prefix, text[:-1]) if text.endswith("/*") else (self._exact, text)
        if create:
            return table.setdefault(key, set())
        return table.get(key)

    def _drop(self, text: str) -> None:
        if text.endswith("/*"):
            self._prefix.pop(text[:-1], None)
        else:
            self._exact.pop(text, None)


class InMemoryBroker:
    """The broker of one hub process."""

    def __init__(
        self,
        last_id: int = 0,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
        recent: RecentEvents | None = None,
    ) -> None:
        self.last_id = last_id
        self.recent = RecentEvents() if recent is None else recent
        self._clock = clock
        self._index = TopicIndex()
        self._all: set[Subscriber] = set()
        self._heartbeats: HeartbeatWheel[Subscriber] = HeartbeatWheel(heartbeat_s, clock())

    @property
    def heartbeat_tick_s(self) -> float:
        """How often ``beat`` should be called."""
        return self._heartbeats.tick_s

    def __len__(self) -> int:
        return len(self._all)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._index.add(subscriber)
        self._all.add(subscriber)
        self._heartbeats.add(subscriber, subscriber.last_write_s + self._heartbeats.silence_s)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._index.remove(subscriber)
        self._all.discard(subscriber)

    def beat(self, now_s: float, heartbeat: bytes) -> int:
        """Write ``heartbeat`` to the live streams silent for ``--heartbeat`` seconds.

        Only the streams that may be due are looked at (``heartbeats.py``); an
        unsubscribed stream leaves the wheel here. Returns how many got one.
        """
        wheel = self._heartbeats
        silence_s = wheel.silence_s
        beaten = 0
        for subscriber in wheel.take_due(now_s):
            if subscriber not in self._all:
                continue
            if subscriber.beat(now_s, silence_s, heartbeat):
                beaten += 1
            # Due but not beaten (a slow client, one catching up): the wheel takes the next tick.
            wheel.add(subscriber, subscriber.last_write_s + silence_s)
        return beaten

    def dispatch(self, events: Sequence[Encoded]) -> int:
        """Offer each event, in id order, to its subscribers; returns frames queued.

        Each subscriber then gets one write for the whole batch.
        """
        queued = 0
        touched: set[Subscriber] = set()
        recent = self.recent
        for event in events:
            if event.id <= self.last_id:
                continue
            for bucket in self._index.matching(event.topic):
                for subscriber in bucket:
                    if subscriber.offer(event):
                        queued += 1
                        touched.add(subscriber)
            self.last_id = event.id
            recent.record(event)
        if touched:
            now_s = self._clock()
            for subscriber in touched:
                subscriber.flush(now_s)
        return queued

    def try_go_live(self, subscriber: Subscriber, covered_through: int) -> bool:
        """Switch a catching-up subscriber to live delivery if nothing lies in between.

        Runs without awaiting, so no dispatch can slip between the check and the
        switch: ids up to ``last_id`` were read from the store, later ones arrive
        live, and ``Subscriber.offer`` drops the overlap.
        """
        if subscriber.state is not State.BEHIND or covered_through < self.last_id:
            return False
        subscriber.go_live(covered_through)
        return True

    def bytes_sent(self) -> int:
        """What the open streams' sinks have sent so far (read when scraped)."""
        return sum(subscriber.bytes_sent for subscriber in self._all)

    def close(self, reason: str) -> None:
        for subscriber in list(self._all):
            subscriber.close(reason)
