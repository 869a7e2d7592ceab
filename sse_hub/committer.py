"""Group commit: concurrent publishes of one hub share a single sequencer transaction.

Every publish must pass through ``sse_hub.append()``, whose transactions run one
at a time. Instead of one round-trip and one commit per HTTP request, requests
that arrive while a transaction is in flight wait together and go into the next
one. A request's events are never split across transactions, so a batch stays
atomic and in order. The queue is bounded: past ``max_pending_events`` the
caller gets ``ServiceUnavailable`` at once instead of waiting without limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sse_hub import store
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import NewEvent
from sse_hub.tasks import stop_task

log = logging.getLogger(__name__)

DEFAULT_MAX_TRANSACTION_EVENTS = 5000
DEFAULT_MAX_PENDING_EVENTS = 50_000

# Called as each sequencer transaction ends: the first id of ``events`` when they were
# committed (their ids follow in order), ``None`` when none were (a drain, a failure).
TransactionListener = Callable[[int | None, Sequence[NewEvent]], None]


@dataclass(slots=True)
class _Request:
    events: Sequence[NewEvent]
    done: asyncio.Future[list[int]]
    queued_s: float  # time.perf_counter() when it arrived


class GroupCommitter:
    """Owns one flusher task; ``start`` it, ``close`` it on shutdown."""

    def __init__(
        self,
        pool: store.Database,
        *,
        max_transaction_events: int = DEFAULT_MAX_TRANSACTION_EVENTS,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
    ) -> None:
        self._pool = pool
        self._max_transaction = max_transaction_events
        self._max_pending = max_pending_events
        self._queue: deque[_Request] = deque()
        self._pending_events = 0
        self._drain_requested = False
        self._drain_skipped = False
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Kept from start(): asyncio.get_running_loop() costs a getpid() system call
        # on Python 3.11, once per publish on this path.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_transaction_end: TransactionListener | None = None
        self.in_transaction = False
        self.transactions = 0
        self.events_committed = 0
        self.drains_skipped = 0
        # Where publish latency goes (sse_hub_commit_seconds_total and friends).
        self.transaction_s = 0.0  # in sse_hub.append(), fsync included
        self.requests_committed = 0
        self.request_s = 0.0  # from arrival to commit: waiting for a transaction, and in it

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._flush_forever(), name="sse-hub-committer")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        while self._queue:
            request = self._queue.popleft()
            if not request.done.done():
                request.done.set_exception(ServiceUnavailable("the hub is shutting down"))

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        """Commit ``events`` (atomically, in order) and return their ids."""
        if self._task is None or self._loop is None:
            raise ServiceUnavailable("the hub is not accepting events")
        if self._pending_events + len(events) > self._max_pending:
            raise ServiceUnavailable("too many events waiting to be stored", retry_after_s=1)
        request = _Request(events, self._loop.create_future(), time.perf_counter())
        self._queue.append(request)
        self._pending_events += len(events)
        self._work.set()
        return await request.done

    def request_drain(self) -> None:
        """Sequence committed outbox rows soon (called when the outbox rings)."""
        self._drain_requested = True
        self._work.set()

    def sequenced_elsewhere(self) -> None:
        """Another session's sequencer transaction committed (``sse_hub_events`` rang).

        A drain skipped while it held the lock runs again now: the rows it
        skipped may have committed after that session's snapshot.
        """
        if self._drain_skipped:
            self._drain_skipped = False
            self.request_drain()

    async def _flush_forever(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue or self._drain_requested:
                await self._flush_once()

    def _next_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        size = 0
        while self._queue:
            request = self._queue[0]
            if batch and size + len(request.events) > self._max_transaction:
                break
            self._queue.popleft()
            self._pending_events -= len(request.events)
            if request.done.cancelled():
                continue
            batch.append(request)
            size += len(request.events)
        return batch

    async def _flush_once(self) -> None:
        self._drain_requested = False
        batch = self._next_batch()
        events = [event for request in batch for event in request.events]
        ids: list[int] = []
        self.in_transaction = True
        try:
            if not batch:
                self._drain_skipped = not await store.drain_outbox(self._pool)
                if self._drain_skipped:
                    self.drains_skipped += 1
                return
            started_s = time.perf_counter()
            ids = await store.append(self._pool, events)
            committed_s = time.perf_counter()
        except asyncio.CancelledError:
            for request in batch:
                request.done.cancel()
            raise
        except Exception as exc:
            log.warning("storing %d events failed: %s", len(events), exc)
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(
                        ServiceUnavailable(f"the database did not store the events: {exc}")
                    )
            return
        finally:
            self.in_transaction = False
            if self.on_transaction_end is not None:
                # Before the requests hear back: a publisher's own subscribers here
                # have the events by the time its POST is answered.
                self.on_transaction_end(ids[0] if ids else None, events)
        self.transactions += 1
        self.events_committed += len(events)
        self.transaction_s += committed_s - started_s
        self.requests_committed += len(batch)
        offset = 0
        for request in batch:
            self.request_s += committed_s - request.queued_s
            count = len(request.events)
            if not request.done.done():
                request.done.set_result(ids[offset : offset + count])
            offset += count
