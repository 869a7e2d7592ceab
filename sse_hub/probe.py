"""``sse-hub probe``: a numbered sequence published through a deployment and read back.

Built on the Python client, so it goes wherever clients go: through nginx, a
load balancer or a CDN. A run publishes a start marker, subscribes
``plan.connections`` times from just before it, and once every stream is open
(or ``START_WAIT_S`` has passed: a buffering proxy holds the answer back with
the events, and nothing is missed either way) publishes ``plan.events``
numbered events at ``plan.rate_per_s``; every
``plan.drop_every_s`` it drops one connection (``Subscription.reconnect()``,
in turn) and the client resumes with ``Last-Event-ID``. Then it waits up to
``plan.grace_s`` for every connection to have every event, publishing a filler
event whenever a publish interval passes without news, so that a proxy holding
the stream's tail lets it go (events do not stall at the end of a real stream
either). ``probe_report.analyse`` makes the figures.

Each event is typed ``sse-hub-probe`` (browsers' ``onmessage`` ignores it) and
its data is JSON: the run's id, and the sequence number with the send time
(``time.time()``), or ``start`` or ``filler``. Events of other runs on the same
topic are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sse_hub.client import Client, ProblemError, Reset, StreamError, Subscription, Token
from sse_hub.probe_plan import Plan
from sse_hub.probe_report import ConnectionLog, Receipt, Report, Sent, analyse
from sse_hub.reconnect import is_retried

PROBE_EVENT = "sse-hub-probe"
# How long publishing waits for the streams to open; they read from the start marker anyway.
START_WAIT_S = 2.0
# A filler is sent when this long (at most) passes in the grace period without news.
MAX_FILLER_INTERVAL_S = 1.0
_PUBLISH_ERRORS = (aiohttp.ClientError, TimeoutError)


class ProbeRefused(Exception):
    """The hub refused the probe, or could not be reached: nothing was measured."""


@dataclass
class _Connection:
    subscription: Subscription
    seqs: set[int] = field(default_factory=set)
    drops: int = 0
    resets: int = 0


async def run_probe(
    url: str,
    plan: Plan,
    *,
    token: Token | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Report:
    """Probe the hub at ``url``; ``ProbeRefused`` when it cannot be probed at all."""
    async with Client(url, token=token, session=session) as hub:
        return await _Run(hub, plan, secrets.token_hex(4)).run()


class _Run:
    def __init__(self, hub: Client, plan: Plan, run_id: str) -> None:
        self.hub = hub
        self.plan = plan
        self.run_id = run_id
        self.connections: list[_Connection] = []
        self.sent: list[Sent] = []
        self.receipts: list[Receipt] = []
        self.publish_errors = 0
        self.first_publish_error: str | None = None
        self.news = asyncio.Event()  # set whenever a probe event arrives
        self.open_at_start = 0

    async def run(self) -> Report:
        try:
            start_id = await self._publish({"start": True})
        except (ProblemError, *_PUBLISH_ERRORS) as exc:
            raise ProbeRefused(f"publishing to {self.plan.topic}: {_describe(exc)}") from None
        for _ in range(self.plan.connections):
            subscription = self.hub.subscribe(self.plan.topic, last_event_id=start_id - 1)
            self.connections.append(_Connection(subscription))
        readers = [
            asyncio.create_task(self._read(index, connection.subscription))
            for index, connection in enumerate(self.connections)
        ]
        try:
            await self._while_reading(self._connect(), readers)
            await self._while_reading(self._send_and_drop(), readers)
            await self._while_reading(self._settle(), readers)
        finally:
            await self.hub.close()  # every iteration ends
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        logs = [
            ConnectionLog(
                connects=connection.subscription.connects,
                drops=connection.drops,
                resets=connection.resets,
            )
            for connection in self.connections
        ]
        return analyse(
            url=self.hub.url,
            plan=self.plan,
            sent=self.sent,
            receipts=self.receipts,
            logs=logs,
            open_at_start=self.open_at_start,
            publish_errors=self.publish_errors,
            first_publish_error=self.first_publish_error,
        )

    async def _while_reading(
        self, step: Awaitable[None], readers: list[asyncio.Task[None]]
    ) -> None:
        """Run ``step``; a reader that fails (a refusal, not a hub's stream) ends the run."""
        task = asyncio.ensure_future(step)
        try:
            await asyncio.wait([task, *readers], return_when=asyncio.FIRST_COMPLETED)
            for reader in readers:
                if reader.done() and (exc := reader.exception()) is not None:
                    if isinstance(exc, ProblemError | StreamError | aiohttp.ClientError):
                        raise ProbeRefused(f"subscribing to {self.plan.topic}: {exc}") from None
                    raise exc
            await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])

    async def _connect(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(START_WAIT_S, self.plan.grace_s)):
                for connection in self.connections:
                    await connection.subscription.wait_connected()
        self.open_at_start = sum(
            connection.subscription.connected_at is not None for connection in self.connections
        )

    async def _read(self, index: int, subscription: Subscription) -> None:
        connection = self.connections[index]
        async for event in subscription:
            now = time.time()
            if isinstance(event, Reset):
                connection.resets += 1
                continue
            data = self._ours(event.event, event.data)
            if data is None:
                continue
            if "seq" in data:
                seq, sent_at = int(data["seq"]), float(data["sent"])
                opened = subscription.connected_at or now
                self.receipts.append(Receipt(index, seq, sent_at, now, live=sent_at >= opened))
                connection.seqs.add(seq)
            self.news.set()

    def _ours(self, event_type: str | None, text: str) -> dict[str, Any] | None:
        if event_type != PROBE_EVENT:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if isinstance(data, dict) and data.get("probe") == self.run_id:
            return data
        return None

    async def _publish(self, fields: dict[str, Any]) -> int:
        data = {"probe": self.run_id, **fields}
        return await self.hub.publish(self.plan.topic, data, event=PROBE_EVENT)

    async def _send_and_drop(self) -> None:
        dropping = asyncio.create_task(self._drop()) if self.plan.drop_every_s else None
        try:
            await self._send()
        finally:
            if dropping is not None:
                dropping.cancel()
                await asyncio.gather(dropping, return_exceptions=True)

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for seq in range(1, self.plan.events + 1):
            # Pacing: each event has its slot; a late publish makes the next one go at once.
            await asyncio.sleep(max(0.0, start + (seq - 1) / self.plan.rate_per_s - loop.time()))
            sent_at = time.time()
            try:
                await self._publish({"seq": seq, "sent": sent_at})
            except ProblemError as exc:
                if not is_retried(exc.status):
                    raise ProbeRefused(f"publishing to {self.plan.topic}: {exc}") from None
                self._publish_failed(exc)
            except _PUBLISH_ERRORS as exc:
                self._publish_failed(exc)
            else:
                self.sent.append(Sent(seq, sent_at))

    def _publish_failed(self, exc: BaseException) -> None:
        self.publish_errors += 1
        if self.first_publish_error is None:
            self.first_publish_error = _describe(exc)

    async def _drop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for count in itertools.count(1):
            await asyncio.sleep(max(0.0, start + count * self.plan.drop_every_s - loop.time()))
            connection = self.connections[(count - 1) % len(self.connections)]
            if connection.subscription.reconnect():
                connection.drops += 1

    async def _settle(self) -> None:
        """Wait for every connection to have every event, up to ``grace_s``."""
        expected = {event.seq for event in self.sent}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.grace_s
        interval_s = min(1 / self.plan.rate_per_s, MAX_FILLER_INTERVAL_S)
        for filler in itertools.count(1):
            if all(expected <= connection.seqs for connection in self.connections):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.news.clear()
            try:
                await asyncio.wait_for(self.news.wait(), min(remaining, interval_s))
            except TimeoutError:
                with contextlib.suppress(ProblemError, *_PUBLISH_ERRORS):
                    await self._publish({"filler": filler})


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
