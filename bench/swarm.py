"""One client process of the scale scenario: its share of the streams, phase by phase.

The coordinator (``bench.scale``) starts several of these (``python -m
bench.client`` with scenario ``scale``), each with its share of the streams
and loopback source addresses of its own. After the job line, each reads one
command per line on stdin and answers each with one JSON line on stdout, so
that every process starts a phase at the coordinator's word (the barrier) and
the coordinator measures the server between phases:

- ``warm``: open and close a few streams (lazily built server state goes into
  the baseline); ``open``: open the share of streams, answering when each has
  its response head; ``count``: how many are still open.
- ``expect``: arm for the next fan-out event, answer ``armed``, then answer
  again with the time the last stream of this process had it.
- ``track``: from now on read every frame (ids, send times, ``retry:``) and
  reconnect a stream that ends, after its ``retry:`` delay, with
  ``Last-Event-ID``; a failed attempt (refused, timed out) is retried after
  the same delay, as an EventSource does, and a refusal with a status after
  its ``Retry-After``. ``publish``/``stop-publish`` (one
  process only): events at a steady rate, and the ids accepted with the time
  of each. ``storm``: streams that come back from now on are the storm's;
  answer once every stream is back and has had an event sent after it came
  back (it is then caught up: ids arrive in order). ``verify``: each stream's
  ids against the published ones (``bench.tally``).
- ``close``: close everything (RST) and end with the process's summary.

Everything has a deadline: each phase its own, the process the job's
``timeout_s``; stdin closing (the coordinator gone) ends the process too.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from bench import procs, tally
from bench.client import CONNECT_CONCURRENCY, EVENT_PAD_BYTES, Job, Publisher, log, open_socket
from bench.wire import (
    ChunkedDecoder,
    EventCounter,
    FrameReader,
    ResponseHead,
    WireError,
    event_data,
)

DEFAULT_RETRY_MS = 3000  # before any retry: line (the hub sends one first; nchan never does)
REFUSAL_RETRY_S = 1.0  # after a status other than 200 without Retry-After
COMMAND_LIMIT_BYTES = 64 * 1024 * 1024
ERRORS_KEPT = 20


class Refused(Exception):
    """The server answered with a status other than 200."""

    def __init__(self, status: int, retry_after_s: float) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.retry_after_s = retry_after_s


class Connection(asyncio.Protocol):
    """One HTTP connection of a ``Stream``: reads the head, then counts or reads frames."""

    __slots__ = (
        "counter",
        "decoder",
        "established",
        "head",
        "opened",
        "reader",
        "request",
        "stream",
        "transport",
    )

    def __init__(self, stream: Stream, request: bytes) -> None:
        self.stream = stream
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head = ResponseHead()
        self.decoder: ChunkedDecoder | None = None
        self.counter = EventCounter()
        self.reader: FrameReader | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.established = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        if not self.head.done:
            try:
                data = self.head.feed(data)
            except WireError as exc:
                self._refuse(exc)
                return
            if not self.head.done:
                return
            if self.head.status != 200:
                after = self.head.headers.get("retry-after", "")  # seconds, or an HTTP date
                wait_s = float(after) if after.isdigit() else REFUSAL_RETRY_S
                self._refuse(Refused(self.head.status, wait_s))
                return
            if self.head.chunked:
                self.decoder = ChunkedDecoder()
            self.established = True
            stream.came_up()
            self.opened.set_result(None)
        if self.decoder is not None:
            data = self.decoder.feed(data)
        if not data:
            return
        if self.counter.feed(data):
            stream.counted(self.counter.count)
        if stream.swarm.tracking:
            if self.reader is None:
                self.reader = FrameReader()
                self.reader.last_id = stream.last_id
            stream.read(self.reader, self.reader.feed(data))

    def _refuse(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the response head: {exc}"))
        if self.established:
            self.stream.went_down()


class Stream:
    """One subscriber, across its connections: what it received and when it came back."""

    __slots__ = (
        "at_ns",
        "closed",
        "connection",
        "goal_seen",
        "ids",
        "is_open",
        "last_id",
        "live",
        "reconnected_ns",
        "retry_ms",
        "swarm",
    )

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.connection: Connection | None = None  # the latest
        self.is_open = False
        self.closed = False  # closed by this client: its end is no loss
        self.goal_seen = 0
        self.last_id = -1
        self.retry_ms = DEFAULT_RETRY_MS
        self.ids = array.array("q")
        self.at_ns = array.array("q")
        self.reconnected_ns = 0
        self.live = False

    async def connect(self, request: bytes, deadline: float) -> None:
        swarm = self.swarm
        sock = await open_socket(swarm.job.host, swarm.job.port, next(swarm.sources))
        self.connection = connection = Connection(self, request)
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: connection, sock=sock)
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await connection.opened
        except BaseException:
            if connection.transport is not None:
                connection.transport.abort()
            else:
                sock.close()
            raise

    def came_up(self) -> None:
        self.is_open = True
        swarm = self.swarm
        swarm.open_now += 1
        if swarm.dropped_ns:
            if not self.reconnected_ns:
                swarm.back += 1
            self.reconnected_ns = time.time_ns()
            swarm.last_back_ns = max(swarm.last_back_ns, self.reconnected_ns)
            if self.live:  # it came back twice: live again only with an event after this
                self.live = False
                swarm.live -= 1
                swarm.redrops += 1

    def counted(self, count: int) -> None:
        goal = self.swarm.goal
        if count >= goal > self.goal_seen:
            self.goal_seen = goal
            self.swarm.reached_goal()

    def read(self, reader: FrameReader, events: list[tuple[int, int]]) -> None:
        if reader.retry_ms is not None:
            self.retry_ms = reader.retry_ms
        if not events:
            return
        now = time.time_ns()
        for event_id, sent_ns in events:
            self.ids.append(event_id)
            self.at_ns.append(now)
            if not self.live and self.reconnected_ns and sent_ns >= self.reconnected_ns:
                self.live = True
                self.swarm.went_live(now)
        self.last_id = reader.last_id

    def went_down(self) -> None:
        self.is_open = False
        swarm = self.swarm
        swarm.open_now -= 1
        if self.closed:
            return
        if swarm.reconnecting:
            swarm.spawn(self.reconnect(self.retry_ms / 1000))
        else:
            swarm.lost += 1

    async def reconnect(self, delay_s: float) -> None:
        """As an EventSource does: after the retry delay, with the last event id.

        A failed attempt waits the same delay again (WHATWG HTML, "reestablish
        the connection"), as browsers do. Retrying faster is not what clients do
        and, at 100,000 streams, makes the clients' own connection attempts the
        load: every 200 ms, 10,000 streams took more CPU than the new hub had
        to start with.
        """
        swarm = self.swarm
        await asyncio.sleep(delay_s)
        job = swarm.job
        while not self.closed and time.monotonic() < swarm.reconnect_until:
            swarm.attempts += 1
            if self.last_id >= 0:
                request = job.dialect.resume(job.header_host, swarm.topic, self.last_id)
            else:
                request = job.dialect.subscribe(job.header_host, swarm.topic)
            try:
                await self.connect(request, swarm.reconnect_until)
                return
            except ConnectionRefusedError:
                swarm.refused += 1
                wait_s = self.retry_ms / 1000
            except Refused as exc:
                swarm.statuses[exc.status] = swarm.statuses.get(exc.status, 0) + 1
                wait_s = exc.retry_after_s
            except (OSError, TimeoutError, WireError) as exc:
                swarm.failed_attempts[type(exc).__name__] = (
                    swarm.failed_attempts.get(type(exc).__name__, 0) + 1
                )
                wait_s = self.retry_ms / 1000
            await asyncio.sleep(wait_s)

    def close(self) -> None:
        self.closed = True
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.abort()


class Swarm:
    """The streams of this process and what the coordinator asked of them."""

    def __init__(self, job: Job) -> None:
        p = job.params
        self.job = job
        self.name: str = p["sources"][0]  # in messages
        self.sources = itertools.cycle(p["sources"])  # each connection from the next
        self.topic: str = p["topic"]
        self.share: int = p["streams"]
        self.streams: list[Stream] = []
        self.open_now = 0
        self.lost = 0  # streams that ended when nothing asked them to
        self.errors: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()
        # fan-out: the count of events every stream should reach, and when the last did
        self.goal = 0
        self.at_goal = 0
        self.goal_ns = 0
        self.goal_waiter: asyncio.Future[None] | None = None
        # the storm
        self.tracking = False
        self.reconnecting = False
        self.reconnect_until = 0.0
        self.dropped_ns = 0
        self.back = 0
        self.live = 0
        self.last_back_ns = 0
        self.last_live_ns = 0
        self.redrops = 0
        self.attempts = 0
        self.refused = 0
        self.statuses: dict[int, int] = {}
        self.failed_attempts: dict[str, int] = {}  # by exception, besides refusals
        self.storm_waiter: asyncio.Future[None] | None = None
        self.storm_streams = 0
        self.publisher: asyncio.Task[None] | None = None
        self.accepted: list[tuple[int, int]] = []
        self.publish_failures = 0
        self.publish_errors: list[str] = []

    def note(self, error: str) -> None:
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(error)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def reached_goal(self) -> None:
        self.at_goal += 1
        if self.at_goal >= self.open_now and self.goal_waiter and not self.goal_waiter.done():
            self.goal_ns = time.time_ns()
            self.goal_waiter.set_result(None)

    def went_live(self, now_ns: int) -> None:
        self.live += 1
        self.last_live_ns = max(self.last_live_ns, now_ns)
        self._check_storm()

    def _check_storm(self) -> None:
        waiter = self.storm_waiter
        if waiter is not None and not waiter.done() and self.live >= self.storm_streams:
            waiter.set_result(None)

    # ---- phases

    async def warm(self, count: int, deadline: float) -> dict[str, Any]:
        job = self.job
        request = job.dialect.subscribe(job.header_host, f"{self.topic}-warm")
        for _ in range(count):
            stream = Stream(self)
            try:
                await stream.connect(request, deadline)
            except (OSError, TimeoutError, WireError, Refused) as exc:
                self.note(f"warm: {type(exc).__name__}: {exc}")
            stream.close()
        return {}

    async def open(self, deadline: float) -> dict[str, Any]:
        job = self.job
        request = job.dialect.subscribe(job.header_host, self.topic)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        failed = 0

        async def open_one() -> None:
            nonlocal failed
            async with gate:
                stream = Stream(self)
                try:
                    await stream.connect(request, deadline)
                except (OSError, TimeoutError, WireError, Refused) as exc:
                    failed += 1
                    self.note(f"open: {type(exc).__name__}: {exc}")
                    return
                self.streams.append(stream)

        started_ns = time.time_ns()
        cpu0 = procs.own_cpu_s()
        await asyncio.gather(*(open_one() for _ in range(self.share)))
        return {
            "opened": len(self.streams),
            "failed": failed,
            "started_ns": started_ns,
            "ended_ns": time.time_ns(),
            "client_cpu_s": procs.own_cpu_s() - cpu0,
        }

    def count(self) -> dict[str, Any]:
        return {"open": self.open_now, "lost": self.lost}

    async def expect(
        self, goal: int, timeout_s: float, say: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        self.goal = goal
        self.goal_ns = 0
        self.at_goal = sum(1 for stream in self.streams if stream.goal_seen >= goal)
        self.goal_waiter = asyncio.get_running_loop().create_future()
        if self.at_goal >= self.open_now:
            self.goal_waiter.set_result(None)
        cpu0 = procs.own_cpu_s()
        say({"done": "armed"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.goal_waiter
        return {
            "reached_ns": self.goal_ns or None,
            "at_goal": self.at_goal,
            "open": self.open_now,
            "client_cpu_s": procs.own_cpu_s() - cpu0,
        }

    def track(self, reconnect_s: float) -> dict[str, Any]:
        self.tracking = True
        self.reconnecting = True
        self.reconnect_until = time.monotonic() + reconnect_s
        return {}

    def start_publishing(self, rate: float) -> dict[str, Any]:
        self.publisher = asyncio.get_running_loop().create_task(self._publish(rate))
        return {}

    async def _publish(self, rate: float) -> None:
        """One event per ``1/rate`` s (open loop, no burst after a stall), through restarts."""
        job = self.job
        publisher = Publisher(job.host, job.port, job.dialect)
        interval_s = 1 / rate
        due = time.monotonic()
        seq = 0
        try:
            while True:
                sent_ns = time.time_ns()
                try:
                    ok = await publisher.send(
                        [(self.topic, event_data(sent_ns, seq, EVENT_PAD_BYTES))]
                    )
                except OSError as exc:  # refused while the server restarts
                    publisher.connection = None
                    ok = False
                    if len(self.publish_errors) < ERRORS_KEPT:
                        self.publish_errors.append(f"{type(exc).__name__}: {exc}")
                if ok and publisher.first_ids:
                    self.accepted.append((publisher.first_ids[-1], time.time_ns()))
                elif not ok:
                    self.publish_failures += 1
                seq += 1
                due += interval_s
                now = time.monotonic()
                if due < now:
                    due = now
                await asyncio.sleep(due - now)
        finally:
            publisher.close()

    async def stop_publishing(self) -> dict[str, Any]:
        if self.publisher is not None:
            self.publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.publisher
        return {
            "accepted": self.accepted,
            "failures": self.publish_failures,
            "errors": self.publish_errors,
        }

    async def storm(self, dropped_ns: int, timeout_s: float) -> dict[str, Any]:
        self.dropped_ns = dropped_ns
        self.storm_streams = self.open_now
        self.storm_waiter = asyncio.get_running_loop().create_future()
        self._check_storm()
        cpu0 = procs.own_cpu_s()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.storm_waiter
        return {
            "streams": self.storm_streams,
            "back": self.back,
            "live": self.live,
            "last_back_ns": self.last_back_ns or None,
            "last_live_ns": self.last_live_ns or None,
            "attempts": self.attempts,
            "refused": self.refused,
            "statuses": self.statuses,
            "failed_attempts": self.failed_attempts,
            "redrops": self.redrops,
            "open": self.open_now,
            "client_cpu_s": procs.own_cpu_s() - cpu0,
        }

    async def verify(
        self, published: list[int], accepted: list[list[int]], wait_s: float
    ) -> dict[str, Any]:
        """Each stream's ids against ``published``, once each has the last (or after ``wait_s``)."""
        last = published[-1] if published else -1
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 (many streams, one poll)
            stream.last_id < last for stream in self.streams if stream.is_open
        ):
            await asyncio.sleep(0.05)
        wanted = frozenset(published)
        accepted_ids = [event_id for event_id, _ in accepted]
        accepted_ns = [at_ns for _, at_ns in accepted]
        check = tally.IdCheck(0, 0, 0)
        with_gaps = not_back = not_caught_up = 0
        caught: list[int] = []
        for stream in self.streams:
            one = tally.check_ids(stream.ids, wanted)
            check += one
            with_gaps += one.missed > 0
            if not stream.reconnected_ns:
                not_back += 1
                continue
            at = tally.caught_up_ns(
                stream.ids, stream.at_ns, stream.reconnected_ns, accepted_ids, accepted_ns
            )
            if at is None:
                not_caught_up += 1
            else:
                caught.append(at)
        caught.sort()
        return {
            "streams": len(self.streams),
            "missed": check.missed,
            "duplicates": check.duplicates,
            "unexpected": check.unexpected,
            "streams_with_gaps": with_gaps,
            "not_back": not_back,
            "not_caught_up": not_caught_up,
            "last_caught_up_ns": caught[-1] if caught else None,
            "median_caught_up_ns": caught[len(caught) // 2] if caught else None,
        }

    def close(self) -> dict[str, Any]:
        self.reconnecting = False
        for task in list(self.tasks):
            task.cancel()
        if self.publisher is not None:
            self.publisher.cancel()
        for stream in self.streams:
            stream.close()
        return {"streams": len(self.streams), "lost": self.lost, "errors": self.errors}


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _commands() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=COMMAND_LIMIT_BYTES)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(job: Job) -> dict[str, Any]:
    """Answer the coordinator's commands until ``close`` (or stdin's end); the summary."""
    swarm = Swarm(job)
    commands = await _commands()
    _say({"done": "ready", "source": swarm.name, "streams": swarm.share})
    try:
        while True:
            line = await commands.readline()
            if not line:
                log(f"{swarm.name}: the coordinator went away")
                break
            command: dict[str, Any] = json.loads(line)
            verb = command["do"]
            deadline = time.monotonic() + float(command.get("timeout_s", 60.0))
            if verb == "warm":
                answer = await swarm.warm(int(command["count"]), deadline)
            elif verb == "open":
                answer = await swarm.open(deadline)
            elif verb == "count":
                answer = swarm.count()
            elif verb == "expect":
                answer = await swarm.expect(int(command["events"]), command["timeout_s"], _say)
            elif verb == "track":
                answer = swarm.track(command["timeout_s"])
            elif verb == "publish":
                answer = swarm.start_publishing(command["rate"])
            elif verb == "stop-publish":
                answer = await swarm.stop_publishing()
            elif verb == "storm":
                answer = await swarm.storm(command["dropped_ns"], command["timeout_s"])
            elif verb == "verify":
                answer = await swarm.verify(
                    command["ids"], command["accepted"], command["timeout_s"]
                )
            elif verb == "close":
                break
            else:
                answer = {"error": f"unknown command {verb!r}"}
            answer["errors"] = swarm.errors[-5:]
            _say({"done": verb, **answer})
    finally:
        summary = swarm.close()
        await asyncio.sleep(0)  # let the aborts go out before the loop ends
    return summary
