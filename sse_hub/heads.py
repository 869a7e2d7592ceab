"""The database's head for streams that start live: one query at a time, shared.

A stream that does not resume starts at the head of ``sse_hub.events`` as of
its request (not at the relay's position, which may lag behind), so it gets
exactly what commits after it asked. Reading the head is one round trip, and
when streams arrive faster than that (clients reconnecting after a restart)
each would pay its own. Instead, streams that ask while a query is running wait
for the *next* query, which starts only after all of them asked: its snapshot
holds every commit that preceded any of their requests, so none starts earlier
than it should, and one query serves them all.
"""

from __future__ import annotations

import asyncio

from sse_hub import store
from sse_hub.tasks import stop_task


class HeadReader:
    """Owns the task that runs the shared queries; ``close`` it on shutdown."""

    def __init__(self, db: store.Database) -> None:
        self.db = db
        self._next: asyncio.Future[int] | None = None  # the query no caller has seen start
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.queries = 0

    async def read(self) -> int:
        """The head as of a query that started after this call; raises what the query raised."""
        if self._closed:
            raise ConnectionError("the hub is closing")
        asked = self._next
        if asked is None:
            asked = self._next = asyncio.get_running_loop().create_future()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="sse-hub-heads")
        # Shielded: one caller giving up (its client left) must not cancel the others' answer.
        return await asyncio.shield(asked)

    async def _run(self) -> None:
        while (asked := self._next) is not None:
            self._next = None
            self.queries += 1
            try:
                head = await store.head(self.db)
            except Exception as exc:
                _fail(asked, exc)
                continue
            except BaseException:
                _fail(asked, ConnectionError("the hub is closing"))
                raise
            asked.set_result(head)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        await stop_task(task)
        asked, self._next = self._next, None
        if asked is not None:
            _fail(asked, ConnectionError("the hub is closing"))


def _fail(asked: asyncio.Future[int], exc: Exception) -> None:
    # Only _run and close() settle these futures, each one it took from _next,
    # and the waiters' shields never cancel them: ``asked`` is still pending.
    asked.set_exception(exc)
    asked.exception()  # retrieved: waiters that already gave up leave no warning behind
