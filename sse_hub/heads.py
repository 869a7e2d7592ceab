"""Where streams that start live start: the head of ``sse_hub.events`` as of their request.

While the relay has read every commit it was told of (``known``), the head is
the broker's ``last_id``, with no query: only a commit whose notification is
still on its way can be newer, and such a stream gets that one too. Otherwise
(the relay is reading, reconnecting, or holds a notification back) the head is
read from the database, so a stream never starts with a backlog the relay has
yet to read.

That read is one round trip, and when streams arrive faster than that each
would pay its own. Instead, streams that ask while a query is running wait for
the *next* query, which starts only after all of them asked: its snapshot holds
every commit that preceded any of their requests, so none starts earlier than
it should, and one query serves them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sse_hub import store
from sse_hub.tasks import stop_task

# One bound per query, shared by the streams waiting for it.
HEAD_TIMEOUT_S = 5.0


class HeadReader:
    """Owns the task that runs the shared queries; ``close`` it on shutdown."""

    def __init__(self, db: store.Database, known: Callable[[], int | None]) -> None:
        self.db = db
        self.known = known  # the head without a query, or None (``Relay.known_head``)
        self._next: list[asyncio.Future[int]] = []  # callers of the query not yet started
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.queries = 0

    async def read(self) -> int:
        """The head as of a query that started after this call; raises what the query raised.

        A query that takes longer than ``HEAD_TIMEOUT_S`` raises ``TimeoutError``.
        """
        if self._closed:
            raise ConnectionError("the hub is closing")
        # Each caller has its own future: one giving up (its client left) cancels
        # only its own, never the others' answer.
        asked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._next.append(asked)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="sse-hub-heads")
        return await asked

    async def _run(self) -> None:
        while asked := self._next:
            self._next = []
            self.queries += 1
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_S):
                    head = await store.head(self.db)
            except Exception as exc:
                _fail(asked, exc)
                continue
            except BaseException:
                _fail(asked, ConnectionError("the hub is closing"))
                raise
            for waiter in asked:
                if not waiter.done():
                    waiter.set_result(head)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        await stop_task(task)
        asked, self._next = self._next, []
        _fail(asked, ConnectionError("the hub is closing"))


def _fail(asked: list[asyncio.Future[int]], exc: Exception) -> None:
    for waiter in asked:
        if not waiter.done():  # a caller that gave up cancelled its own
            waiter.set_exception(exc)
