"""The relay: one LISTEN connection per hub process, reading new events in id order.

NOTIFY is a doorbell, the table is the truth. A notification only wakes the
relay, which then reads ``id > last_id`` from ``sse_hub.events`` in batches,
encodes each event once and hands the batch to the broker. A notification
names the newest id of its commit; one the relay has already read past (its
own publishes, read as soon as they commit) costs no query. Notifications lost
while the connection was down are harmless: after reconnecting, the relay
reads from where it was. A slow poll covers a silent connection as well.

The connection is our own, never a pooled one (asyncpg's pool runs
``UNLISTEN *`` when a connection goes back).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import asyncpg

from sse_hub import frames, store
from sse_hub.broker import Broker
from sse_hub.committer import GroupCommitter
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
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.reconnects = 0
        self.lag_s = 0.0
        self.events_relayed = 0
        self.frames_queued = 0
        self.reads = 0
        self.notifications_skipped = 0
        self.last_error = ""

    async def start(self) -> None:
        """Connect once (so a wrong DSN fails start-up), then relay in the background."""
        await self._connect()
        self._broker.last_id = await store.head(self._conn)
        self._task = asyncio.create_task(self._run(), name="sse-hub-relay")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self._disconnect()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (for operators and tests)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

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
        if not self.ring(_notified_id(payload)):
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
        while True:
            rows = await store.fetch_after(self._conn, self._broker.last_id, self._batch)
            self.reads += 1
            if not rows:
                return
            encoded = [
                Encoded(row.id, row.topic, frames.event_frame(row.id, row.event, row.data))
                for row in rows
            ]
            self.frames_queued += self._broker.dispatch(encoded)
            self.events_relayed += len(rows)
            self.lag_s = max(0.0, time.time() - rows[-1].created_at.timestamp())
            if len(rows) < self._batch:
                return


def _notified_id(payload: str) -> int | None:
    """The id a notification names; ``None`` (read anyway) for anything else."""
    return int(payload) if payload.isascii() and payload.isdigit() else None
