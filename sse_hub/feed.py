"""What one subscriber should be sent next: history from the store, then live frames.

A ``Feed`` starts ``BEHIND`` when the client resumes (it reads pages of
matching events from the store) and switches to live delivery once it has
covered everything the broker has dispatched; a subscriber whose buffer
overflows falls behind again and catches up the same way. Each page is one
query in one snapshot, so memory stays bounded however long the replay, and the
reset check sees exactly the rows it reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from sse_hub import frames, store
from sse_hub.broker import Broker
from sse_hub.events import TopicPattern
from sse_hub.replay import Resume, check_position
from sse_hub.subscriber import State, Subscriber

DEFAULT_PAGE_EVENTS = 500
HEAD_TIMEOUT_S = 5.0


class FeedClosed(Exception):
    """The subscriber was closed (hub shutting down, or disconnected by policy)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Feed:
    def __init__(
        self,
        db: Any,
        broker: Broker,
        patterns: tuple[TopicPattern, ...],
        resume: Resume | None,
        *,
        buffer_limit_bytes: int,
        page_events: int = DEFAULT_PAGE_EVENTS,
    ) -> None:
        self._db = db
        self._broker = broker
        self._page_events = page_events
        # Clients that asked for "earliest" already expect history to start
        # wherever it starts: no reset notice for them on the first page.
        self._report_truncation = resume is not None and not resume.from_earliest
        self._resume = resume
        self.subscriber = Subscriber(
            patterns,
            position=resume.after if resume is not None else broker.last_id,
            live=False,
            buffer_limit_bytes=buffer_limit_bytes,
        )
        self.replayed = 0
        self._open = False

    async def open(self) -> None:
        """Register with the broker; from here on nothing matching can be missed.

        A client that does not resume gets what commits after its request: the
        start is the database's head, not the relay's position, which may lag
        (another hub's publish, or a relay that is reconnecting).
        """
        subscriber = self.subscriber
        if self._resume is None:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_S):
                    subscriber.position = await store.head(self._db)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                subscriber.position = self._broker.last_id  # database away: live from here
            if subscriber.position == self._broker.last_id:
                subscriber.go_live(self._broker.last_id)
        self._broker.subscribe(subscriber)
        self._open = True

    def close(self, reason: str = "closed") -> None:
        if self._open:
            self._open = False
            self._broker.unsubscribe(self.subscriber)
        self.subscriber.close(reason)

    async def next_chunk(self, timeout_s: float) -> bytes | None:
        """The next bytes to write, or ``None`` after ``timeout_s`` of silence."""
        subscriber = self.subscriber
        while True:
            if subscriber.state is State.CLOSED:
                raise FeedClosed(subscriber.close_reason)
            chunk = subscriber.take()
            if chunk:
                return chunk
            if subscriber.state is State.BEHIND:
                chunk = await self._read_page()
                if chunk:
                    return chunk
                continue
            if not await subscriber.wait(timeout_s):
                return None

    async def _read_page(self) -> bytes:
        subscriber = self.subscriber
        after = subscriber.position
        upto = self._broker.last_id
        page = await store.fetch_page(
            self._db, subscriber.patterns, after=after, upto=upto, limit=self._page_events
        )
        if subscriber.state is not State.BEHIND:
            return b""  # closed, or overtaken, while we were reading
        parts: list[bytes] = []
        report, self._report_truncation = self._report_truncation, True
        reset = check_position(after, page.oldest, page.head)
        if reset is not None:
            if report:
                parts.append(frames.reset_frame(reset.reason, reset.oldest_id))
            subscriber.position = reset.skip_to
            if reset.skip_to < after:  # an id this database never issued: start over
                return b"".join(parts)
        for event in page.events:
            parts.append(frames.event_frame(event.id, event.event, event.data))
        if page.events:
            subscriber.position = page.events[-1].id
            self.replayed += len(page.events)
        if not page.full:
            # Everything up to ``upto`` is covered; ids beyond it come live.
            self._broker.try_go_live(subscriber, max(subscriber.position, upto))
        return b"".join(parts)
