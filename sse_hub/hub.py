"""The long-lived parts of one hub process, started and stopped in order.

``Hub.start`` connects the pool, starts group commit, the relay and retention;
``Hub.close`` stops them in reverse. The HTTP app, the embedding API and
``sse-hub tail`` all run on one of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import asyncpg

from sse_hub import frames, store
from sse_hub.broker import InMemoryBroker
from sse_hub.committer import GroupCommitter
from sse_hub.config import Settings
from sse_hub.events import NewEvent, TopicPattern, new_event
from sse_hub.feed import Feed
from sse_hub.heads import HeadReader
from sse_hub.listener import Relay
from sse_hub.recent import RecentEvents, max_age_for
from sse_hub.replay import Resume
from sse_hub.retention import Retention
from sse_hub.tasks import stop_task

log = logging.getLogger(__name__)

POOL_MIN_SIZE = 1
HEALTH_TIMEOUT_S = 2.0
HEARTBEAT = frames.comment_line("heartbeat")


async def _end_transaction(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs between uses here.

    asyncpg's default reset (``UNLISTEN *``, ``RESET ALL``, ``CLOSE ALL``...)
    costs a round trip per query; the hub keeps no session state on pooled
    connections (LISTEN has its own connection, advisory locks are
    transaction-scoped), so only an unfinished transaction needs ending.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@dataclass
class Counters:
    """Plain numbers the hot paths bump; ``/metrics`` reads them when scraped."""

    streams_open: int = 0
    streams_total: int = 0
    streams_front_door: int = 0  # of streams_total, opened without aiohttp's request
    streams_refused: int = 0
    events_published: int = 0
    frames_replayed: int = 0
    replayed_from_memory: int = 0
    replay_pages_from_memory: int = 0
    replay_page_queries: int = 0
    slow_disconnects: int = 0
    catch_ups: int = 0
    bytes_sent: int = 0
    file_bytes_served: int = 0
    problems: dict[int, int] = field(default_factory=dict)  # error answers by status


@dataclass
class Hub:
    settings: Settings
    dsn: str
    pool: asyncpg.Pool
    broker: InMemoryBroker
    committer: GroupCommitter
    relay: Relay
    retention: Retention | None
    heads: HeadReader
    counters: Counters = field(default_factory=Counters)
    heartbeats: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings, dsn: str, *, retention: bool = True) -> Hub:
        pool = await asyncpg.create_pool(
            dsn, min_size=POOL_MIN_SIZE, max_size=settings.db_pool_size, reset=_end_transaction
        )
        broker = InMemoryBroker(
            heartbeat_s=settings.heartbeat_s,
            recent=RecentEvents(max_age_s=max_age_for(settings.retention_s)),
        )
        committer = GroupCommitter(pool)
        relay = Relay(dsn, broker, committer)
        try:
            committer.start()
            await relay.start()
        except BaseException:
            await committer.close()
            await pool.close()
            raise
        pruner = Retention(pool, settings.retention_s) if retention else None
        if pruner is not None:
            pruner.start()
        heads = HeadReader(pool, relay.known_head)
        hub = cls(settings, dsn, pool, broker, committer, relay, pruner, heads)
        hub.heartbeats = asyncio.create_task(hub._beat_forever(), name="sse-hub-heartbeats")
        return hub

    async def _beat_forever(self) -> None:
        """Each tick writes the heartbeats that are due (no timer per stream)."""
        tick_s = self.broker.heartbeat_tick_s
        while True:
            await asyncio.sleep(tick_s)
            try:
                self.broker.beat(time.monotonic(), HEARTBEAT)
            except Exception:  # one broken stream must not end heartbeats for all
                log.exception("heartbeat sweep failed")

    async def close(self) -> None:
        """Stop everything in reverse order of start; each step runs even if one fails."""
        self.broker.close("shutdown")
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.pool.close)
            stack.push_async_callback(self.heads.close)
            stack.push_async_callback(stop_task, self.heartbeats)
            stack.push_async_callback(self.committer.close)
            stack.push_async_callback(self.relay.close)
            if self.retention is not None:
                stack.push_async_callback(self.retention.close)

    async def publish(self, topic: str, data: object, event: str | None = None) -> int:
        """Publish one event from Python code; returns its id once it is committed.

        ``data`` is sent as is when it is a string, else as compact JSON. Bad
        values raise the same errors (``InvalidInput``, ``PayloadTooLarge``) the
        HTTP API answers with.
        """
        (event_id,) = await self.publish_events(
            [new_event(topic, data, event, max_data_bytes=self.settings.max_data_bytes)]
        )
        return event_id

    async def publish_events(self, events: list[NewEvent]) -> list[int]:
        """Store validated events atomically and in order; their ids."""
        ids = await self.committer.append(events)  # dispatched here at commit (Relay.committed)
        self.counters.events_published += len(ids)
        return ids

    def feed(self, patterns: tuple[TopicPattern, ...], resume: Resume | None) -> Feed:
        """A subscription; its frames go to the sink given to ``Feed.ready``."""
        return Feed(
            self.heads,
            self.broker,
            patterns,
            resume,
            buffer_limit_bytes=self.settings.subscriber_buffer_bytes,
        )

    async def database_ok(self) -> bool:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await store.head(self.pool)
        except Exception:
            return False
        return True
