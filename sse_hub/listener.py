"""The relay: one LISTEN connection per hub process, reading new events in id order.

NOTIFY is a doorbell, the table is the truth. A notification only wakes the
relay, which then reads ``id > last_id`` from ``sse_hub.events`` in batches,
encodes each event once and hands the batch to the broker. A notification
names the newest id of its commit; one the relay has already read past costs
no query. Notifications lost while the connection was down are harmless: after
reconnecting, the relay reads from where it was. A slow poll covers a silent
connection as well.

This process's own publishes skip the read when they can (``committed``):
when a transaction's first id directly follows the broker's ``last_id``,
nothing can come between (ids are dense and follow commit order), so its
events go out from memory at commit. Anything else (another commit in between,
outbox rows sequenced in the same transaction) rings the relay, which reads
them from the table. A read that overlaps what went out at commit is harmless:
the broker ignores ids it has already dispatched. A notification that arrives
while this process's own sequencer transaction is in flight may be that
transaction's: it is weighed when the transaction ends, so the relay does not
read back what went out at commit.

The connection is our own, never a pooled one (asyncpg's pool runs
``UNLISTEN *`` when a connection goes back).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from sse_hub import frames, store
from sse_hub.broker import Broker
from sse_hub.committer import GroupCommitter
from sse_hub.events import NewEvent
from sse_hub.frames import Encoded
from sse_hub.tasks import stop_task

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "sse_hub_events"
OUTBOX_CHANNEL = "sse_hub_outbox"
DEFAULT_BATCH = 1000
DEFAULT_POLL_S = 5.0
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
CONNECT_TIMEOUT_S = 10.0


class Relay:
    """Owns the LISTEN connection and the task that feeds the broker."""

    def __init__(
        self,
        dsn: str,
        broker: Broker,
        committer: GroupCommitter,
        *,
        batch: int = DEFAULT_BATCH,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self._dsn = dsn
        self._broker = broker
        self._committer = committer
        self._batch = batch
        self._poll_s = poll_s
        self._bell = asyncio.Event()
        self._deferred_through: int | None = None  # notified during our own transaction
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._reading = False
        self.connected = False
        self.reconnects = 0
        self.lag_s = 0.0
        self.events_relayed = 0
        self.events_sent_at_commit = 0
        self.frames_queued = 0
        self.reads = 0
        self.read_s = 0.0
        self.notifications_skipped = 0
        self.last_error = ""

    async def start(self) -> None:
        """Connect once (so a wrong DSN fails start-up), then relay in the background."""
        await self._connect()
        self._broker.last_id = await store.head(self._conn)
        await self._remember_recent()
        self._committer.on_transaction_end = self.transaction_ended
        self._task = asyncio.create_task(self._run(), name="sse-hub-relay")

    async def _remember_recent(self) -> None:
        """Fill the broker's memory with the newest events, as if it had dispatched them.

        The clients of a hub that restarts come back at once, each resuming from
        its last id: from memory, their history costs no query each.
        """
        recent = self._broker.recent
        rows = await store.fetch_newest(
            self._conn, self._broker.last_id, recent.max_events, recent.max_bytes
        )
        for row in rows:
            recent.record(_encoded(row))

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self._disconnect()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (for operators and tests)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    def transaction_ended(self, first_id: int | None, events: Sequence[NewEvent]) -> None:
        """This process's sequencer transaction ended; ``events`` got ``first_id``, ``+ 1``...

        They go to the broker now if they directly follow its ``last_id``;
        otherwise the relay reads the table (see the module's docstring). Then
        a notification that came in meanwhile is weighed.
        """
        if first_id is not None:
            if first_id - 1 == self._broker.last_id:
                self._send_at_commit(first_id, events)
            else:
                self.ring(first_id + len(events) - 1)
        deferred, self._deferred_through = self._deferred_through, None
        if deferred is not None and not self.ring(deferred):
            self.notifications_skipped += 1

    def _send_at_commit(self, first_id: int, events: Sequence[NewEvent]) -> None:
        committed_s = time.time()
        encoded = [
            Encoded(
                event_id,
                event.topic,
                frames.event_frame(event_id, event.event, event.data),
                committed_s,
            )
            for event_id, event in enumerate(events, first_id)
        ]
        self.frames_queued += self._broker.dispatch(encoded)
        self.events_relayed += len(encoded)
        self.events_sent_at_commit += len(encoded)

    def known_head(self) -> int | None:
        """The broker's ``last_id`` while no newer commit is known here, else ``None``.

        That is while the relay is connected, has read every commit it was told
        of, and holds no notification back: only a notification still on its
        way can name a newer commit.
        """
        caught_up = self.connected and not self._reading and not self._bell.is_set()
        return self._broker.last_id if caught_up and self._deferred_through is None else None

    def ring(self, through_id: int | None = None) -> bool:
        """Wake the relay to read up to ``through_id`` (``None``: whatever is new).

        Returns ``False`` when everything up to ``through_id`` was already read:
        ids are visible in commit order, so nothing at or below it can appear later.
        """
        if through_id is not None and through_id <= self._broker.last_id:
            return False
        self._bell.set()
        return True

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            await conn.add_listener(EVENTS_CHANNEL, self._on_events)
            await conn.add_listener(OUTBOX_CHANNEL, self._on_outbox)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self.connected = True
        self._committer.request_drain()  # outbox rows may have rung while we were away
        self._bell.set()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None:
            conn.terminate()

    def _on_events(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._committer.sequenced_elsewhere()
        through_id = _notified_id(payload)
        if self._committer.in_transaction:  # perhaps ours: see transaction_ended
            deferred = self._deferred_through
            self._deferred_through = max(through_id, deferred or 0)
            return
        if not self.ring(through_id):
            self.notifications_skipped += 1

    def _on_outbox(self, *_: object) -> None:
        self._committer.request_drain()

    def _on_terminated(self, *_: object) -> None:
        self.connected = False
        self._bell.set()

    async def _run(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._disconnect()
                    await self._connect()
                    self.reconnects += 1
                    log.info("relay reconnected; catching up after id %d", self._broker.last_id)
                await self._catch_up()
                backoff_s = BACKOFF_FIRST_S
                try:
                    # Not wait_for: on Python 3.11 it drops a cancellation that lands
                    # in the same loop turn as the bell, and close() then waits for ever.
                    async with asyncio.timeout(self._poll_s):
                        await self._bell.wait()
                except TimeoutError:
                    if await store.outbox_pending(self._conn):
                        self._committer.request_drain()
            except Exception as exc:  # any failure: back off, reconnect, catch up
                self.last_error = str(exc) or type(exc).__name__
                log.warning("relay lost the database (%s); retrying in %.1fs", exc, backoff_s)
                await self._disconnect()
                await asyncio.sleep(backoff_s * random.uniform(0.5, 1.0))
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)

    async def _catch_up(self) -> None:
        """Read and dispatch every event after ``last_id``, batch by batch."""
        self._bell.clear()
        self._reading = True
        try:
            await self._read_all()
        finally:
            self._reading = False

    async def _read_all(self) -> None:
        while True:
            started_s = time.perf_counter()
            rows = await store.fetch_after(self._conn, self._broker.last_id, self._batch)
            self.read_s += time.perf_counter() - started_s
            self.reads += 1
            if not rows:
                return
            dispatched_through = self._broker.last_id  # may have moved on at commit meanwhile
            encoded = [_encoded(row) for row in rows if row.id > dispatched_through]
            self.frames_queued += self._broker.dispatch(encoded)
            self.events_relayed += len(encoded)
            self.lag_s = max(0.0, time.time() - rows[-1].created_at.timestamp())
            if len(rows) < self._batch:
                return


_ANY_ID = sys.maxsize  # a notification that names no id: read whatever is new


def _encoded(row: store.RelayRow) -> Encoded:
    frame = frames.event_frame(row.id, row.event, row.data)
    return Encoded(row.id, row.topic, frame, row.created_at.timestamp())


def _notified_id(payload: str) -> int:
    """The id a notification names; ``_ANY_ID`` (read anyway) for anything else."""
    return int(payload) if payload.isascii() and payload.isdigit() else _ANY_ID
