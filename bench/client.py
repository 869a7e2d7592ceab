"""The load client: one process, uvloop, raw asyncio protocols, one scenario per run.

``python -m bench.client`` reads a JSON job on stdin and prints a JSON result on
stdout (progress goes to stderr). The same client drives every target; what
differs is only the request bytes (``bench.dialects``).

It measures the server from outside: CPU time of the server's process tree and
of PostgreSQL's over the measured window, resident memory sampled every
``SAMPLE_S``, and its own CPU time, so a run where the client (one core, one
Python thread) was the limit says so.

Every loop here is bounded by a deadline; sockets close with RST (``SO_LINGER``
0) so thousands of connections per run leave no ``TIME_WAIT`` behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench import procs
from bench.dialects import ACCEPTED, DIALECTS, Dialect
from bench.scrape import HubWindow
from bench.wire import (
    ChunkedDecoder,
    EventCounter,
    LatencyParser,
    ResponseHead,
    WireError,
    event_data,
    percentile,
)

SAMPLE_S = 0.25
CONNECT_CONCURRENCY = 64
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
EVENT_PAD_BYTES = 64
_LINGER_RST = struct.pack("ii", 1, 0)
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux; named in 3.12


def log(message: str) -> None:
    print(f"  [client] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measurement


@dataclass
class Window:
    """CPU and memory of the server (and its database) over one measured interval."""

    server_root: int
    db_root: int | None
    started: float = 0.0
    ended: float = 0.0
    server_cpu0: float = 0.0
    server_cpu1: float = 0.0
    db_cpu0: float = 0.0
    db_cpu1: float = 0.0
    client_cpu0: float = 0.0
    client_cpu1: float = 0.0
    machine0: float = 0.0
    machine1: float = 0.0
    peak_rss_kib: int = 0
    server_pids: tuple[int, ...] = ()
    _sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        sample = procs.tree_cpu(self.server_root)
        self.server_pids = sample.pids
        self.server_cpu0 = sample.cpu_s
        self.db_cpu0 = procs.tree_cpu(self.db_root).cpu_s if self.db_root else 0.0
        self.client_cpu0 = procs.own_cpu_s()
        self.machine0 = procs.machine_busy_s()
        self.started = time.monotonic()
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            rss, _ = procs.tree_memory_kib(self.server_pids)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            await asyncio.sleep(SAMPLE_S)

    async def stop(self) -> None:
        self.ended = time.monotonic()
        self.machine1 = procs.machine_busy_s()
        self.client_cpu1 = procs.own_cpu_s()
        self.server_cpu1 = procs.tree_cpu(self.server_root).cpu_s
        self.db_cpu1 = procs.tree_cpu(self.db_root).cpu_s if self.db_root else 0.0
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        rss, _ = procs.tree_memory_kib(self.server_pids)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)

    def report(self) -> dict[str, Any]:
        wall = max(self.ended - self.started, 1e-9)
        client_cpu = self.client_cpu1 - self.client_cpu0
        server_cpu = self.server_cpu1 - self.server_cpu0
        _, hwm = procs.tree_memory_kib(self.server_pids)
        db_cpu = self.db_cpu1 - self.db_cpu0
        machine = self.machine1 - self.machine0
        return {
            "wall_s": wall,
            "server_cpu_s": server_cpu,
            "server_cpu_util": server_cpu / wall,
            "db_cpu_s": db_cpu,
            # Busy CPU of the machine not spent in the server, PostgreSQL or this client:
            # the kernel's loopback networking and anything else running (noise).
            "other_cpu_util": max(0.0, machine - server_cpu - db_cpu - client_cpu) / wall,
            "client_cpu_s": client_cpu,
            "client_cpu_util": client_cpu / wall,
            "peak_rss_kib": self.peak_rss_kib,
            "hwm_kib": hwm,
        }


# ---------------------------------------------------------------- connections


async def open_socket(host: str, port: int, source: str | None = None) -> socket.socket:
    """A connected socket that closes with RST; from ``source`` (an address, port 0) if given.

    One source address gives a client one range of ephemeral ports (some 28,000
    here): a client process with its own loopback address has a range of its own.
    The port is left to ``connect`` (``IP_BIND_ADDRESS_NO_PORT``): ``bind`` would
    search the address's ports for a free one on every call, which with 15,000
    sockets on one address cost the client twice what the connection did.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    try:
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Totals:
    """Counters shared by every stream of a run (one Python int add per read)."""

    __slots__ = ("closed", "delivered", "errors", "latencies_ns", "ready")

    def __init__(self) -> None:
        self.delivered = 0
        self.ready = 0
        self.closed = 0
        self.errors: list[str] = []
        self.latencies_ns: list[int] = []


class Stream(asyncio.Protocol):
    """One SSE subscriber: counts events, and on sampled streams records latencies."""

    def __init__(self, request: bytes, totals: Totals, *, sample_latency: bool) -> None:
        self.request = request
        self.totals = totals
        self.head = ResponseHead()
        self.decoder: ChunkedDecoder | None = None
        self.counter = EventCounter()
        self.latency = LatencyParser() if sample_latency else None
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.head.done:
            try:
                data = self.head.feed(data)
            except WireError as exc:
                self._fail(str(exc))
                return
            if not self.head.done:
                return
            if self.head.status != 200:
                self._fail(f"status {self.head.status}")
                return
            if self.head.chunked:
                self.decoder = ChunkedDecoder()
            self.totals.ready += 1
            if not self.opened.done():
                self.opened.set_result(None)
        if self.decoder is not None:
            data = self.decoder.feed(data)
        if data:
            self.totals.delivered += self.counter.feed(data)
            if self.latency is not None:
                self.totals.latencies_ns.extend(self.latency.feed(data, time.time_ns()))

    def _fail(self, reason: str) -> None:
        self.totals.errors.append(reason)
        if not self.opened.done():
            self.opened.set_exception(WireError(reason))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.totals.closed += 1
        if not self.opened.done():
            self.opened.set_exception(WireError(f"closed before the response: {exc}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_streams(
    host: str,
    port: int,
    requests: list[bytes],
    totals: Totals,
    *,
    sample_every: int,
    deadline: float,
) -> list[Stream]:
    """Open one stream per request (``CONNECT_CONCURRENCY`` at a time) and wait for each head."""
    loop = asyncio.get_running_loop()
    streams: list[Stream] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(index: int, request: bytes) -> None:
        async with gate:
            sock = await open_socket(host, port)
            stream = Stream(
                request, totals, sample_latency=sample_every > 0 and index % sample_every == 0
            )
            await loop.create_connection(lambda: stream, sock=sock)
            streams.append(stream)
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await stream.opened

    try:
        await asyncio.gather(*(open_one(i, r) for i, r in enumerate(requests)))
    except BaseException:
        for stream in streams:
            stream.close()
        raise
    return streams


class HttpConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._head = ResponseHead()
        self._decoder: ChunkedDecoder | None = None
        self._body: list[bytes] = []
        self._remaining = 0
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        sock = await open_socket(host, port)
        connection = cls()
        await asyncio.get_running_loop().create_connection(lambda: connection, sock=sock)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._head = ResponseHead()
        self._decoder = None
        self._body = []
        self.transport.write(data)
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await self._waiter

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        head = self._head
        if not head.done:
            try:
                data = head.feed(data)
            except WireError as exc:
                waiter.set_exception(exc)
                return
            if not head.done:
                return
            if head.chunked:
                self._decoder = ChunkedDecoder()
            else:
                self._remaining = head.content_length or 0
        if self._decoder is not None:
            self._body.append(self._decoder.feed(data))
            if self._decoder.finished:
                waiter.set_result((head.status, b"".join(self._body)))
            return
        self._body.append(data)
        self._remaining -= len(data)
        if self._remaining <= 0:
            waiter.set_result((head.status, b"".join(self._body)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Publisher:
    """Publishes over one keep-alive connection, reconnecting when the server closes it."""

    def __init__(self, host: str, port: int, dialect: Dialect) -> None:
        self.host = host
        self.port = port
        self.dialect = dialect
        self.header_host = f"{host}:{port}"
        self.connection: HttpConnection | None = None
        self.accepted = 0
        self.requests = 0
        self.errors: list[str] = []
        self.first_ids: list[int] = []

    async def send(self, events: list[tuple[str, str]], *, retained: bool = False) -> bool:
        if self.connection is None or self.connection.closed:
            self.connection = await HttpConnection.open(self.host, self.port)
        request = self.dialect.publish(self.header_host, events, retained=retained)
        self.requests += 1
        try:
            status, body = await self.connection.request(request)
        except (ConnectionError, TimeoutError, WireError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.connection.close()
            self.connection = None
            return False
        if status not in ACCEPTED:
            self.errors.append(f"status {status}: {body[:200]!r}")
            return False
        self.accepted += len(events)
        first = self.dialect.first_id(body)
        if first is not None:
            self.first_ids.append(first)
        return True

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class OpenLoop:
    """Sends ``posts_per_s`` requests a second whatever the answers (open loop).

    Each request goes out on an idle keep-alive connection; when every
    connection is busy the request waits for one and counts as ``late``.
    ``make_events(n)`` builds the n-th request's events (send times inside).
    """

    def __init__(
        self,
        publishers: list[Publisher],
        posts_per_s: float,
        make_events: Callable[[int], list[tuple[str, str]]],
    ) -> None:
        self._idle: asyncio.Queue[Publisher] = asyncio.Queue()
        for publisher in publishers:
            self._idle.put_nowait(publisher)
        self._pending: set[asyncio.Task[None]] = set()
        self._posts_per_s = posts_per_s
        self._make_events = make_events
        self._start: float | None = None
        self.sent = 0
        self.late = 0
        self.answers_ns: list[int] = []  # send → accepted, per request answered (one per send)

    async def run_until(
        self, stop_at: float, on_tick: Callable[[float], None] | None = None
    ) -> None:
        """Keep the rate until ``stop_at`` (monotonic); ``on_tick(now)`` before each round."""
        if self._start is None:
            self._start = time.monotonic()
        while (now := time.monotonic()) < stop_at:
            if on_tick is not None:
                on_tick(now)
            due = int((now - self._start) * self._posts_per_s) - self.sent
            for _ in range(due):
                if self._idle.empty():
                    self.late += 1  # every connection busy: this request goes out late
                publisher = await self._idle.get()
                task = asyncio.create_task(self._send(publisher, self.sent))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                self.sent += 1
            await asyncio.sleep(0.001)

    async def _send(self, publisher: Publisher, seq: int) -> None:
        try:
            sent_ns = time.time_ns()
            if await publisher.send(self._make_events(seq)):
                self.answers_ns.append(time.time_ns() - sent_ns)
        finally:
            self._idle.put_nowait(publisher)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)


# ---------------------------------------------------------------- scenarios


@dataclass
class Job:
    scenario: str
    dialect: Dialect
    host: str
    port: int
    server_pid: int
    db_pid: int | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def header_host(self) -> str:
        return f"{self.host}:{self.port}"

    def window(self) -> Window:
        return Window(self.server_pid, self.db_pid)


def _latency_summary(latencies_ns: list[int]) -> dict[str, Any]:
    ordered = sorted(latencies_ns)
    return {
        "latency_samples": len(ordered),
        "latency_p50_ms": percentile(ordered, 0.50) / 1e6,
        "latency_p99_ms": percentile(ordered, 0.99) / 1e6,
        "latency_p999_ms": percentile(ordered, 0.999) / 1e6,
        "latency_max_ms": (ordered[-1] / 1e6) if ordered else float("nan"),
    }


def _stream_errors(totals: Totals, publishers: list[Publisher]) -> list[str]:
    errors = list(totals.errors)
    for publisher in publishers:
        errors.extend(publisher.errors)
    return errors[:20]


async def broadcast(job: Job) -> dict[str, Any]:
    """fan-out and topics: subscribers on ``topics`` topics, publishing as fast as delivered.

    Publishers keep at most ``window_events`` events published but not yet
    delivered everywhere, so the run measures what the target sustains
    end to end (and never piles up a backlog that a later target would not face).

    In that closed loop, latency is the window over the rate (Little's law):
    it measures the window, not the target. With ``latency_rate`` set, the
    latency figures come instead from a second phase at that fixed rate (open
    loop, ``batch`` events per request), the same offered load for every target.
    """
    p = job.params
    subscribers: int = p["subscribers"]
    topic_count: int = p["topics"]
    batch = min(p.get("batch", 1), job.dialect.max_batch)
    connections: int = p["publishers"]
    window_events: int = p["window_events"]
    prefix = f"{p['topic_prefix']}-"
    topics = [f"{prefix}{i}" for i in range(topic_count)]
    per_event = subscribers // topic_count  # deliveries per published event
    totals = Totals()
    deadline = time.monotonic() + p["connect_timeout_s"]
    requests = [
        job.dialect.subscribe(job.header_host, topics[i % topic_count]) for i in range(subscribers)
    ]
    streams = await open_streams(
        job.host, job.port, requests, totals, sample_every=p["sample_every"], deadline=deadline
    )
    log(f"{len(streams)} streams open")
    publishers = [Publisher(job.host, job.port, job.dialect) for _ in range(connections)]
    published = 0
    seq = 0
    stop_at = time.monotonic() + p["warmup_s"] + p["measure_s"]

    async def publish_loop(publisher: Publisher) -> None:
        nonlocal published, seq
        while time.monotonic() < stop_at:
            if (published * per_event - totals.delivered) > window_events * per_event:
                await asyncio.sleep(0.0005)
                continue
            events = []
            for _ in range(batch):
                events.append(
                    (topics[seq % topic_count], event_data(time.time_ns(), seq, EVENT_PAD_BYTES))
                )
                seq += 1
            published += len(events)
            if not await publisher.send(events):
                published -= len(events)
                await asyncio.sleep(0.01)

    window = job.window()
    tasks = [asyncio.create_task(publish_loop(pub)) for pub in publishers]
    try:
        await asyncio.sleep(p["warmup_s"])
        totals.latencies_ns.clear()
        delivered0 = totals.delivered
        accepted0 = sum(pub.accepted for pub in publishers)
        window.start()
        await asyncio.sleep(p["measure_s"])
        delivered1 = totals.delivered
        accepted1 = sum(pub.accepted for pub in publishers)
        await window.stop()
        latencies = list(totals.latencies_ns)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        fixed_rate: dict[str, Any] = {}
        if p.get("latency_rate"):
            await _drained(totals, published * per_event, p["drain_timeout_s"])
            fixed_rate = await _fixed_rate_latency(job, publishers, totals, topics, batch)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pub in publishers:
            pub.close()
        for stream in streams:
            stream.close()
    result = window.report()
    delivered = delivered1 - delivered0
    saturated = _latency_summary(latencies)
    result.update(
        saturated_latency_p50_ms=saturated["latency_p50_ms"],
        saturated_latency_p99_ms=saturated["latency_p99_ms"],
        subscribers=subscribers,
        topics=topic_count,
        batch=batch,
        delivered=delivered,
        delivered_per_s=delivered / result["wall_s"],
        published=accepted1 - accepted0,
        published_per_s=(accepted1 - accepted0) / result["wall_s"],
        server_us_per_delivery=result["server_cpu_s"] / max(delivered, 1) * 1e6,
        db_us_per_delivery=result["db_cpu_s"] / max(delivered, 1) * 1e6,
        streams_closed_early=totals.closed,
        errors=_stream_errors(totals, publishers),
        **saturated,
    )
    result.update(fixed_rate)  # when measured, these latency figures replace the closed loop's
    return result


async def _drained(totals: Totals, expected: int, timeout_s: float) -> None:
    """Wait until ``expected`` deliveries have arrived (the closed loop's backlog is out)."""
    deadline = time.monotonic() + timeout_s
    # Polled: the streams only add to a counter per read; an Event set per read costs more.
    while totals.delivered < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def _fixed_rate_latency(
    job: Job,
    publishers: list[Publisher],
    totals: Totals,
    topics: list[str],
    batch: int,
) -> dict[str, Any]:
    """Latency at ``latency_rate`` events/s, ``batch`` per request, round-robin over ``topics``.

    For the hub, its own counters around the window say where the time went.
    """
    p = job.params
    rate: float = p["latency_rate"]
    hub_window = HubWindow(job.host, job.port, is_hub=job.dialect.name == "hub")

    def make_events(request: int) -> list[tuple[str, str]]:
        sent_ns = time.time_ns()
        first = request * batch
        return [
            (topics[seq % len(topics)], event_data(sent_ns, seq, EVENT_PAD_BYTES))
            for seq in range(first, first + batch)
        ]

    sender = OpenLoop(publishers, rate / batch, make_events)
    try:
        await sender.run_until(time.monotonic() + p["latency_warmup_s"])
        await hub_window.start()
        totals.latencies_ns.clear()
        sender.answers_ns.clear()
        late0 = sender.late
        await sender.run_until(time.monotonic() + p["latency_s"])
        latencies = list(totals.latencies_ns)
        breakdown = await hub_window.breakdown()
    finally:
        await sender.close()
    return {
        "latency_rate": rate,
        "latency_late_sends": sender.late - late0,
        "answer_p50_ms": percentile(sorted(sender.answers_ns), 0.50) / 1e6,
        **breakdown,
        **_latency_summary(latencies),
    }


async def latency(job: Job) -> dict[str, Any]:
    """Steady ``rate`` events/s to one topic (open loop), ``subscribers`` reading it."""
    p = job.params
    subscribers: int = p["subscribers"]
    rate: float = p["rate"]
    topic = f"{p['topic_prefix']}-lat"
    totals = Totals()
    deadline = time.monotonic() + p["connect_timeout_s"]
    requests = [job.dialect.subscribe(job.header_host, topic) for _ in range(subscribers)]
    streams = await open_streams(
        job.host, job.port, requests, totals, sample_every=p["sample_every"], deadline=deadline
    )
    log(f"{len(streams)} streams open")
    publishers = [Publisher(job.host, job.port, job.dialect) for _ in range(p["publishers"])]
    sender = OpenLoop(
        publishers, rate, lambda seq: [(topic, event_data(time.time_ns(), seq, EVENT_PAD_BYTES))]
    )
    window = job.window()
    warm_until = time.monotonic() + p["warmup_s"]
    stop_at = warm_until + p["measure_s"]
    measuring = False
    delivered0 = late0 = 0
    hub_window = HubWindow(job.host, job.port, is_hub=job.dialect.name == "hub")

    def start_measuring(now: float) -> None:
        nonlocal measuring, delivered0, late0
        if not measuring and now >= warm_until:
            measuring = True
            totals.latencies_ns.clear()
            sender.answers_ns.clear()
            delivered0, late0 = totals.delivered, sender.late
            window.start()

    try:
        await sender.run_until(warm_until)
        await hub_window.start()
        await sender.run_until(stop_at, start_measuring)
        delivered1 = totals.delivered
        await window.stop()
        latencies = list(totals.latencies_ns)
        breakdown = await hub_window.breakdown()
    finally:
        await sender.close()
        for pub in publishers:
            pub.close()
        for stream in streams:
            stream.close()
    result = window.report()
    delivered = delivered1 - delivered0
    result.update(
        subscribers=subscribers,
        rate=rate,
        delivered=delivered,
        delivered_per_s=delivered / result["wall_s"],
        expected_per_s=rate * subscribers,
        late_sends=sender.late - late0,
        server_us_per_delivery=result["server_cpu_s"] / max(delivered, 1) * 1e6,
        errors=_stream_errors(totals, publishers),
        answer_p50_ms=percentile(sorted(sender.answers_ns), 0.50) / 1e6,
        answer_p99_ms=percentile(sorted(sender.answers_ns), 0.99) / 1e6,
        **breakdown,
        **_latency_summary(latencies),
    )
    return result


async def _snapshot(job: Job, index: int) -> None:
    """Ask a hub started by ``bench.hub_traced`` for a tracemalloc snapshot, and wait for it."""
    folder = job.params.get("snapshot_dir")
    if not folder:
        return
    path = Path(folder) / f"snapshot-{index}.pickle"
    os.kill(job.server_pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline:  # noqa: ASYNC110 (another process)
        await asyncio.sleep(0.1)


async def idle(job: Job) -> dict[str, Any]:
    """``streams`` open streams that receive nothing: resident memory per stream."""
    p = job.params
    count: int = p["streams"]
    topic = f"{p['topic_prefix']}-idle"
    pids = procs.descendants(job.server_pid)
    # One stream opened and closed first, so lazily built state is in the baseline.
    totals = Totals()
    deadline = time.monotonic() + p["connect_timeout_s"]
    warm = await open_streams(
        job.host,
        job.port,
        [job.dialect.subscribe(job.header_host, topic)],
        totals,
        sample_every=0,
        deadline=deadline,
    )
    for stream in warm:
        stream.close()
    await asyncio.sleep(p["settle_s"])
    await _snapshot(job, 0)
    rss0, _ = procs.tree_memory_kib(pids)
    cpu0 = procs.tree_cpu(job.server_pid).cpu_s
    started = time.monotonic()
    requests = [job.dialect.subscribe(job.header_host, topic) for _ in range(count)]
    streams = await open_streams(
        job.host, job.port, requests, totals, sample_every=0, deadline=deadline
    )
    opened_s = time.monotonic() - started
    log(f"{len(streams)} streams open in {opened_s:.1f}s")
    try:
        await asyncio.sleep(p["settle_s"])
        rss1, hwm = procs.tree_memory_kib(pids)
        cpu1 = procs.tree_cpu(job.server_pid).cpu_s
        still_open = count - totals.closed
        await _snapshot(job, 1)
        idle_cpu0 = procs.tree_cpu(job.server_pid).cpu_s
        await asyncio.sleep(p["idle_window_s"])  # the measurement: time passing, nothing sent
        idle_ms_per_s = (procs.tree_cpu(job.server_pid).cpu_s - idle_cpu0) / p["idle_window_s"]
    finally:
        for stream in streams:
            stream.close()
    return {
        "streams": count,
        "streams_open_at_sample": still_open,
        "baseline_rss_kib": rss0,
        "rss_kib": rss1,
        "peak_rss_kib": max(rss1, hwm),
        "hwm_kib": hwm,
        "rss_per_stream_kib": (rss1 - rss0) / max(count, 1),
        "open_s": opened_s,
        "streams_per_s": count / max(opened_s, 1e-9),
        "server_cpu_s": cpu1 - cpu0,
        "server_us_per_stream_open": (cpu1 - cpu0) / max(count, 1) * 1e6,
        "idle_ms_per_s": idle_ms_per_s * 1000,
        "errors": totals.errors[:20],
    }


async def publish(job: Job) -> dict[str, Any]:
    """``publishers`` connections publishing back to back, ``batch`` events per request."""
    p = job.params
    batch = min(p["batch"], job.dialect.max_batch)
    topic = f"{p['topic_prefix']}-pub"
    publishers = [Publisher(job.host, job.port, job.dialect) for _ in range(p["publishers"])]
    stop_at = time.monotonic() + p["warmup_s"] + p["measure_s"]
    seq = 0

    async def loop(pub: Publisher) -> None:
        nonlocal seq
        while time.monotonic() < stop_at:
            events = [
                (topic, event_data(time.time_ns(), seq + i, EVENT_PAD_BYTES)) for i in range(batch)
            ]
            seq += batch
            if not await pub.send(events):
                await asyncio.sleep(0.01)

    window = job.window()
    tasks = [asyncio.create_task(loop(pub)) for pub in publishers]
    try:
        await asyncio.sleep(p["warmup_s"])
        accepted0 = sum(pub.accepted for pub in publishers)
        window.start()
        await asyncio.sleep(p["measure_s"])
        accepted1 = sum(pub.accepted for pub in publishers)
        await window.stop()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pub in publishers:
            pub.close()
    result = window.report()
    accepted = accepted1 - accepted0
    result.update(
        publishers=len(publishers),
        batch=batch,
        accepted=accepted,
        accepted_per_s=accepted / result["wall_s"],
        server_us_per_event=result["server_cpu_s"] / max(accepted, 1) * 1e6,
        db_us_per_event=result["db_cpu_s"] / max(accepted, 1) * 1e6,
        errors=_stream_errors(Totals(), publishers),
    )
    return result


async def replay(job: Job) -> dict[str, Any]:
    """Publish ``events`` to a fresh topic, then one client reads them all from the start."""
    p = job.params
    total: int = p["events"]
    topic = f"{p['topic_prefix']}-replay"
    batch = job.dialect.max_batch
    publishers = [Publisher(job.host, job.port, job.dialect) for _ in range(p["publishers"])]
    remaining = total
    seq = 0

    async def fill(pub: Publisher) -> None:
        nonlocal remaining, seq
        fill_deadline = time.monotonic() + p["fill_timeout_s"]
        while remaining > 0 and time.monotonic() < fill_deadline:
            size = min(batch, remaining)
            remaining -= size
            events = [(topic, event_data(0, seq + i, EVENT_PAD_BYTES)) for i in range(size)]
            seq += size
            if not await pub.send(events, retained=True):
                remaining += size
                await asyncio.sleep(0.01)

    fill_started = time.monotonic()
    try:
        await asyncio.gather(*(fill(pub) for pub in publishers))
    finally:
        for pub in publishers:
            pub.close()
    fill_s = time.monotonic() - fill_started
    filled = sum(pub.accepted for pub in publishers)
    first_ids = [i for pub in publishers for i in pub.first_ids]
    after = min(first_ids) - 1 if first_ids else 0
    log(f"published {filled} events in {fill_s:.1f}s; replaying")
    totals = Totals()
    window = job.window()
    window.start()
    request = job.dialect.resume(job.header_host, topic, after)
    deadline = time.monotonic() + p["read_timeout_s"]
    streams = await open_streams(
        job.host, job.port, [request], totals, sample_every=0, deadline=deadline
    )
    try:
        # Polled (1 ms) rather than signalled, to keep the per-read path free of checks.
        while totals.delivered < filled and time.monotonic() < deadline and not totals.closed:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        await window.stop()
    finally:
        for stream in streams:
            stream.close()
    result = window.report()
    result.update(
        events=filled,
        fill_s=fill_s,
        fill_per_s=filled / max(fill_s, 1e-9),
        received=totals.delivered,
        complete=totals.delivered >= filled,
        replayed_per_s=totals.delivered / result["wall_s"],
        server_us_per_event=result["server_cpu_s"] / max(totals.delivered, 1) * 1e6,
        errors=_stream_errors(totals, publishers),
    )
    return result


class Download(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.head = ResponseHead()
        self.received = 0
        self.expected: int | None = None
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.head.done:
            data = self.head.feed(data)
            if not self.head.done:
                return
            self.expected = self.head.content_length
            if self.head.status != 200 or self.expected is None:
                self._finish(f"status {self.head.status}, length {self.expected}")
                return
        self.received += len(data)
        if self.expected is not None and self.received >= self.expected:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        if not self.done.done():
            self.done.set_result(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost after {self.received} bytes: {exc}")


async def download(job: Job) -> dict[str, Any]:
    """One GET of a large file; MB/s and server CPU per GiB."""
    p = job.params
    request = (
        f"GET {p['path']} HTTP/1.1\r\nHost: {job.header_host}\r\nAccept: */*\r\n\r\n"
    ).encode("latin-1")
    window = job.window()
    window.start()
    sock = await open_socket(job.host, job.port)
    protocol = Download(request)
    await asyncio.get_running_loop().create_connection(lambda: protocol, sock=sock)
    error: str | None
    try:
        async with asyncio.timeout(p["timeout_s"]):
            error = await protocol.done
    except TimeoutError:
        error = f"timed out after {protocol.received} bytes"
    finally:
        if protocol.transport is not None:
            protocol.transport.abort()
    await window.stop()
    result = window.report()
    result.update(
        bytes=protocol.received,
        expected_bytes=protocol.expected,
        mb_per_s=protocol.received / result["wall_s"] / 1e6,
        server_cpu_s_per_gib=result["server_cpu_s"] / max(protocol.received / 2**30, 1e-9),
        errors=[error] if error else [],
    )
    return result


async def scale(job: Job) -> dict[str, Any]:
    """One of the scale scenario's client processes, driven phase by phase (``bench.swarm``)."""
    from bench import swarm  # imports this module: loaded only by the processes that need it

    return await swarm.run(job)


async def hosts(job: Job) -> dict[str, Any]:
    """The hosts scenario's client: subscribers on several hubs (``bench.hosts_client``)."""
    from bench import hosts_client  # imports this module: loaded only by the processes that need it

    return await hosts_client.run(job)


SCENARIOS: dict[str, Callable[[Job], Awaitable[dict[str, Any]]]] = {
    "broadcast": broadcast,
    "latency": latency,
    "idle": idle,
    "publish": publish,
    "replay": replay,
    "download": download,
    "scale": scale,
    "hosts": hosts,
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(job: Job) -> dict[str, Any]:
    handler = SCENARIOS[job.scenario]
    async with asyncio.timeout(job.params.get("timeout_s", 300)):
        return await handler(job)


def read_job() -> dict[str, Any]:
    """The job: stdin's first line (or all of it, without a newline), read unbuffered.

    Unbuffered, because the scale scenario's processes go on reading commands
    from stdin once the loop runs: a buffered read could swallow the first.
    """
    raw = bytearray()
    while not raw.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            break
        raw += byte
    job: dict[str, Any] = json.loads(raw)
    return job


def main() -> int:
    spec = read_job()
    job = Job(
        scenario=spec["scenario"],
        dialect=DIALECTS[spec["dialect"]],
        host=spec["host"],
        port=spec["port"],
        server_pid=spec["server_pid"],
        db_pid=spec.get("db_pid"),
        params=spec["params"],
    )
    raise_fd_limit()
    try:
        import uvloop

        runner: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = uvloop.run  # type: ignore[assignment]
        loop_name = "uvloop"
    except ImportError:  # still measures, but slower: said in the result
        runner = asyncio.run  # type: ignore[assignment]
        loop_name = "asyncio"
    result = runner(run(job))
    result["client_loop"] = loop_name
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
