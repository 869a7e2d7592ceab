"""What one subscriber should be sent next: history from the store, then live frames.

A ``Feed`` starts ``BEHIND`` when the client resumes (it reads pages of
matching events from the store) and switches to live delivery once it has
covered everything the broker has dispatched; a subscriber whose buffer
overflows falls behind again and catches up the same way. Each page is one
query in one snapshot, so memory stays bounded however long the replay, and the
reset check sees exactly the rows it reads.

A page whose whole range the broker still holds in memory (``recent.py``)
is served from there, without a query: a reconnect storm after a blip then
costs the database nothing. It is still just a page, and the switch to live
delivery after it is the same.

A page that cannot be read (the database is unreachable) ends the feed with
``FeedClosed("database")``: the client resumes from its last id, which a
stream without its history could not serve anyway.
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import asyncpg

from sse_hub import frames, store
from sse_hub.broker import Broker
from sse_hub.events import TopicPattern
from sse_hub.heads import HeadReader
from sse_hub.replay import Resume, check_position
from sse_hub.subscriber import Sink, State, Subscriber

DEFAULT_PAGE_EVENTS = 2000
PAGE_TIMEOUT_S = 30.0
DATABASE_GONE = "database"
# OSError covers timeouts too; InternalClientError is what asyncpg raises on a
# connection that died between two protocol steps.
_DATABASE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class FeedCounts(NamedTuple):
    """What a feed did since it was last asked (see ``Feed.take_counts``)."""

    replayed: int  # events sent from history, wherever they came from
    catch_ups: int  # times the subscriber fell behind and caught up
    replayed_from_memory: int  # of ``replayed``, the events served from ``recent``
    pages_from_memory: int  # pages served from ``recent``, with no query
    page_queries: int  # pages read from the database


class FeedClosed(Exception):
    """The subscriber was closed (hub shutting down, or disconnected by policy)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Feed:
    __slots__ = (
        "_broker",
        "_database_first",
        "_go_live_after_write",
        "_heads",
        "_overflows_counted",
        "_report_truncation",
        "_resume",
        "page_queries",
        "pages_from_memory",
        "replayed",
        "replayed_from_memory",
        "subscriber",
    )

    def __init__(
        self,
        heads: HeadReader,
        broker: Broker,
        patterns: tuple[TopicPattern, ...],
        resume: Resume | None,
        *,
        buffer_limit_bytes: int,
    ) -> None:
        self._heads = heads
        self._broker = broker
        # Clients that asked for "earliest" already expect history to start
        # wherever it starts: no reset notice for them on the first page.
        self._report_truncation = resume is not None and not resume.from_earliest
        # "earliest" is every retained event: only the database knows where that starts.
        self._database_first = resume is not None and resume.from_earliest
        self._resume = resume
        self.subscriber = Subscriber(
            patterns,
            position=resume.after if resume is not None else broker.last_id,
            live=False,
            buffer_limit_bytes=buffer_limit_bytes,
        )
        self.subscriber.last_write_s = time.monotonic()
        self.replayed = 0
        self.replayed_from_memory = 0
        self.pages_from_memory = 0
        self.page_queries = 0
        self._overflows_counted = 0
        self._go_live_after_write: int | None = None

    async def open(self) -> None:
        """Register with the broker; from here on nothing matching can be missed.

        A client that does not resume gets what commits after its request: it
        starts at the database's head (``heads.py``).
        """
        if self.open_now():
            return
        subscriber = self.subscriber
        try:
            subscriber.position = await self._heads.read()
        except _DATABASE_ERRORS:
            subscriber.position = self._broker.last_id  # database away: live from here
        if subscriber.position == self._broker.last_id:
            subscriber.go_live(self._broker.last_id)
        self._broker.subscribe(subscriber)

    def open_now(self) -> bool:
        """``open`` without awaiting, when nothing is to be awaited.

        That is a resume, or a stream that starts live while the head is known
        without a query. ``False`` (and nothing done) otherwise: ``open`` it.
        """
        if self._resume is None:
            head = self._heads.known()
            if head is None:
                return False
            self.subscriber.position = head
            self.subscriber.go_live(head)
        self._broker.subscribe(self.subscriber)
        return True

    def close(self, reason: str = "closed") -> None:
        self._broker.unsubscribe(self.subscriber)  # a no-op if never subscribed, or again
        self.subscriber.close(reason)

    def take_counts(self) -> FeedCounts:
        """What happened since the last call (for the hub's counters)."""
        overflows = self.subscriber.overflows
        counts = FeedCounts(
            replayed=self.replayed,
            catch_ups=overflows - self._overflows_counted,
            replayed_from_memory=self.replayed_from_memory,
            pages_from_memory=self.pages_from_memory,
            page_queries=self.page_queries,
        )
        self._overflows_counted = overflows
        self.replayed = self.replayed_from_memory = 0
        self.pages_from_memory = self.page_queries = 0
        return counts

    def ready(self, sink: Sink) -> None:
        """The client can take bytes: live frames and heartbeats now go straight to ``sink``."""
        self.subscriber.attach(sink, time.monotonic())

    def idle(self) -> asyncio.Future[None] | None:
        """While the broker writes this stream's frames and heartbeats, what to wait on.

        ``None`` when the caller should ask ``next_page`` instead: something to
        read from the store, a switch to live delivery pending, or a closed feed.
        """
        subscriber = self.subscriber
        if self._go_live_after_write is not None or subscriber.state is not State.LIVE:
            return None
        return subscriber.changed()

    async def next_page(self) -> bytes:
        """The next history the caller must write (empty once the feed is live again).

        Call it again only after writing what it returned: a catching-up
        subscriber switches to live frames once its last page is written, so a
        live frame can never overtake replayed ones. Raises ``FeedClosed``.
        """
        subscriber = self.subscriber
        if self._go_live_after_write is not None:
            self._broker.try_go_live(subscriber, self._go_live_after_write)
            self._go_live_after_write = None
        while True:
            if subscriber.state is State.CLOSED:
                raise FeedClosed(subscriber.close_reason)
            if subscriber.state is State.LIVE:
                return b""
            page = await self._read_page()
            if page:
                subscriber.last_write_s = time.monotonic()
                return page
            if self._go_live_after_write is not None:
                self._broker.try_go_live(subscriber, self._go_live_after_write)
                self._go_live_after_write = None

    async def _read_page(self) -> bytes:
        if not self._database_first:
            from_memory = self._page_from_memory()
            if from_memory is not None:
                return from_memory
        self._database_first = False
        subscriber = self.subscriber
        after = subscriber.position
        upto = self._broker.last_id
        self.page_queries += 1
        try:
            async with asyncio.timeout(PAGE_TIMEOUT_S):
                page = await store.fetch_page(
                    self._heads.db,  # the hub's pool, reached through its head reader
                    subscriber.patterns,
                    after=after,
                    upto=upto,
                    limit=DEFAULT_PAGE_EVENTS,
                    # A page is held in memory and then in the socket: the same
                    # bound as live frames, so a catching-up client costs no more.
                    max_bytes=subscriber.buffer_limit_bytes,
                )
        except _DATABASE_ERRORS:
            subscriber.close(DATABASE_GONE)
            raise FeedClosed(DATABASE_GONE) from None
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
            # Everything up to ``upto`` is covered; ids beyond it come live
            # once this page is written (see ``next_page``).
            self._go_live_after_write = max(subscriber.position, upto)
        return b"".join(parts)

    def _page_from_memory(self) -> bytes | None:
        """The rest of the history up to the broker's ``last_id``, if memory holds all of it."""
        subscriber = self.subscriber
        upto = self._broker.last_id
        page = self._broker.recent.page(
            subscriber.patterns,
            after=subscriber.position,
            upto=upto,
            max_bytes=subscriber.buffer_limit_bytes,  # more: pages from the database
        )
        if page is None:
            return None
        # Nothing after the position was removed (``recent.py``): no reset is owed.
        self._report_truncation = True
        subscriber.position = upto
        self.replayed += page.events
        self.replayed_from_memory += page.events
        self.pages_from_memory += 1
        self._go_live_after_write = upto
        return page.frames
