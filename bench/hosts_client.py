"""One load client process of the hosts scenario: subscribers on N hubs, events into the first.

``bench.client`` runs ``run`` for a job whose scenario is ``hosts``; the job's
``hubs`` lists every running hub (port and pid), all on one PostgreSQL. The
client opens each hub's share of the subscribers on one topic (every
``sample_every``-th stream of each hub parses send times), then publishes
``rate`` events/s open loop, one event per POST on ``publishers`` keep-alive
connections, to the first hub only, as a producer would. Over the measured
window it reads:

- each hub's ``GET /metrics`` just before and just after the window: relay
  reads (``sse_hub_relay_reads_total``) and events relayed;
- each hub's CPU and PostgreSQL's: the scheduler's nanosecond counts of every
  process of the tree, a process born in the window counted whole, plus the
  clock ticks of PostgreSQL backends that exited in it;
- the events accepted, the deliveries, publish→receive latencies, its own CPU.

It answers raw counts; ``bench.hosts`` turns them into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

from bench import procs, tally
from bench.client import (
    EVENT_PAD_BYTES,
    Job,
    OpenLoop,
    Publisher,
    Stream,
    Totals,
    log,
    open_streams,
)
from bench.scrape import hub_counters
from bench.wire import event_data, percentile

RELAY_READS = "sse_hub_relay_reads_total"
EVENTS_RELAYED = "sse_hub_events_relayed_total"


@dataclass(frozen=True)
class HubAddress:
    port: int
    pid: int


class TreeCpu:
    """CPU seconds of one process tree over a window, to the nanosecond."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._before: dict[int, float] = {}
        self._reaped_before = 0.0

    def _reaped_s(self) -> float:
        """Clock ticks of children the root has waited for (a backend that exited)."""
        with_reaped = procs.process_cpu_s(self.root, include_reaped=True)
        return with_reaped - procs.process_cpu_s(self.root)

    def start(self) -> None:
        self._reaped_before = self._reaped_s()
        self._before = procs.run_s_by_pid(self.root)

    def stop(self) -> float:
        spent = procs.run_s_between(self._before, procs.run_s_by_pid(self.root))
        return spent + self._reaped_s() - self._reaped_before


async def _scrape(ports: list[int]) -> list[dict[str, float]]:
    """Each hub's relay counters, read one hub after the other."""
    return [await hub_counters("127.0.0.1", port, (RELAY_READS, EVENTS_RELAYED)) for port in ports]


async def _publish_steadily(sender: OpenLoop, stop_at: float) -> None:
    try:
        await sender.run_until(stop_at)
    finally:
        await sender.close()


async def run(job: Job) -> dict[str, Any]:
    p = job.params
    hubs = [HubAddress(int(hub["port"]), int(hub["pid"])) for hub in p["hubs"]]
    topic = f"{p['topic_prefix']}-hosts"
    totals = Totals()
    streams: list[Stream] = []
    publishers: list[Publisher] = []
    deadline = time.monotonic() + p["connect_timeout_s"]
    try:
        for hub, share in zip(hubs, tally.shares(p["subscribers"], len(hubs)), strict=True):
            request = job.dialect.subscribe(f"{job.host}:{hub.port}", topic)
            streams += await open_streams(
                job.host,
                hub.port,
                [request] * share,
                totals,
                sample_every=p["sample_every"],
                deadline=deadline,
            )
        log(f"{len(streams)} streams open on {len(hubs)} hub(s)")
        publishers = [
            Publisher(job.host, hubs[0].port, job.dialect) for _ in range(p["publishers"])
        ]
        result = await _measure(hubs, publishers, totals, topic, job)
    finally:
        for publisher in publishers:
            publisher.close()
        for stream in streams:
            stream.close()
    result.update(streams=len(streams), streams_closed_early=totals.closed)
    result["errors"] = (totals.errors + [e for pub in publishers for e in pub.errors])[:20]
    return result


async def _measure(
    hubs: list[HubAddress],
    publishers: list[Publisher],
    totals: Totals,
    topic: str,
    job: Job,
) -> dict[str, Any]:
    p = job.params
    ports = [hub.port for hub in hubs]
    hub_cpu = [TreeCpu(hub.pid) for hub in hubs]
    db_cpu = TreeCpu(job.db_pid) if job.db_pid else None
    # Publishing goes on a little past the window, so the window's end is steady too.
    stop_at = time.monotonic() + p["warmup_s"] + p["measure_s"] + 1.0
    sender = OpenLoop(
        publishers,
        p["rate"],
        lambda seq: [(topic, event_data(time.time_ns(), seq, EVENT_PAD_BYTES))],
    )
    publishing = asyncio.create_task(_publish_steadily(sender, stop_at))
    try:
        await asyncio.sleep(p["warmup_s"])
        before = await _scrape(ports)
        for meter in hub_cpu:
            meter.start()
        if db_cpu is not None:
            db_cpu.start()
        client_cpu0, started = procs.own_cpu_s(), time.monotonic()
        accepted0 = sum(pub.accepted for pub in publishers)
        delivered0 = totals.delivered
        totals.latencies_ns.clear()
        await asyncio.sleep(p["measure_s"])
        accepted1 = sum(pub.accepted for pub in publishers)
        delivered1 = totals.delivered
        latencies = sorted(totals.latencies_ns)
        wall_s = time.monotonic() - started
        client_cpu_s = procs.own_cpu_s() - client_cpu0
        db_cpu_s = db_cpu.stop() if db_cpu is not None else math.nan
        hub_cpu_s = [meter.stop() for meter in hub_cpu]
        after = await _scrape(ports)
        await publishing
    finally:
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
    return {
        "hubs": len(hubs),
        "wall_s": wall_s,
        "published": accepted1 - accepted0,
        "late_sends": sender.late,
        "subscribers": p["subscribers"],
        "delivered": delivered1 - delivered0,
        "db_cpu_s": db_cpu_s,
        "hub_cpu_s": hub_cpu_s,
        "relay_reads": [
            b[RELAY_READS] - a[RELAY_READS] for a, b in zip(before, after, strict=True)
        ],
        "events_relayed": [
            b[EVENTS_RELAYED] - a[EVENTS_RELAYED] for a, b in zip(before, after, strict=True)
        ],
        "client_cpu_s": client_cpu_s,
        "client_cpu_util": client_cpu_s / max(wall_s, 1e-9),
        "latency_samples": len(latencies),
        "latency_p50_ms": percentile(latencies, 0.50) / 1e6,
        "latency_p99_ms": percentile(latencies, 0.99) / 1e6,
    }
