"""``GET /metrics``: the hub's counters in Prometheus text format.

Nothing on the per-event path touches prometheus-client: the hub keeps plain
integers (``Hub.counters``, the relay's counters), and a collector reads them
when Prometheus scrapes. Each application has its own ``CollectorRegistry``, so
several hubs in one process (tests, embedding) never share or clash. Each
process reports itself: with ``--workers N`` a scrape reaches one worker, named
by the ``pid`` label of ``sse_hub_worker_info``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from sse_hub.auth import require_bearer
from sse_hub.hub import Hub
from sse_hub.keys import HUB
from sse_hub.ops import NO_STORE
from sse_hub.problems import answering_problems
from sse_hub.throttle import THROTTLE, Throttle

PREFIX = "sse_hub_"


class HubCollector:
    """Reads one application's hub and rate limiter at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            PREFIX + "worker", "The process answering this scrape", value={"pid": str(os.getpid())}
        )
        hub = self._app.get(HUB)
        if hub is not None:
            yield from _hub_metrics(hub)
        throttle = self._app.get(THROTTLE)
        if throttle is not None:
            yield from _throttle_metrics(throttle)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _hub_metrics(hub: Hub) -> Iterator[Metric]:
    counters, relay = hub.counters, hub.relay
    yield _gauge("streams_open", "Streams open now", counters.streams_open)
    yield _counter("streams", "Streams opened", counters.streams_total)
    yield _counter(
        "streams_front_door",
        "Streams opened by the front door, without aiohttp's request handling",
        counters.streams_front_door,
    )
    yield _counter(
        "streams_refused", "Streams refused because of --max-streams", counters.streams_refused
    )
    yield _counter(
        "events_published", "Events published through this process", counters.events_published
    )
    yield _counter(
        "events_relayed",
        "Events the relay handed to subscribers, from any producer",
        relay.events_relayed,
    )
    yield _counter(
        "events_sent_at_commit",
        "Of those, this process's own publishes sent at commit without a read",
        relay.events_sent_at_commit,
    )
    yield _counter(
        "events_delivered",
        "Events queued to subscribers, live or replayed",
        relay.frames_queued + counters.frames_replayed,
    )
    yield _counter(
        "events_replayed", "Events sent from history (resumes, catch-ups)", counters.frames_replayed
    )
    yield _counter(
        "events_replayed_from_memory",
        "Of those, events served from the hub's memory of recent events, with no query",
        counters.replayed_from_memory,
    )
    yield _counter(
        "replay_pages_from_memory",
        "Pages of history served from memory of recent events, with no query",
        counters.replay_pages_from_memory,
    )
    yield _counter(
        "replay_page_queries",
        "Pages of history read from the database",
        counters.replay_page_queries,
    )
    yield _counter(
        "bytes_sent",
        "Bytes written to streams (HTTP chunk framing included, headers not)",
        counters.bytes_sent + hub.broker.bytes_sent(),
    )
    yield _counter(
        "slow_subscriber_catch_ups",
        "Times a subscriber's buffer was full and it caught up from the database",
        counters.catch_ups,
    )
    yield _counter(
        "slow_subscriber_disconnects",
        "Subscribers disconnected for leaving a write unread past --write-timeout",
        counters.slow_disconnects,
    )
    yield _gauge(
        "relay_lag_seconds",
        "Age of the newest event the relay has read when it read it",
        relay.lag_s,
    )
    yield _gauge(
        "relay_connected", "1 when the relay's LISTEN connection is up", int(relay.connected)
    )
    yield _counter("listener_reconnects", "Reconnections of the relay", relay.reconnects)
    yield _counter("relay_reads", "Queries the relay made for new events", relay.reads)
    yield _counter(
        "relay_read_seconds", "Time the relay's queries for new events took", relay.read_s
    )
    committer = hub.committer
    yield _counter(
        "commits", "Sequencer transactions run for this process's publishes", committer.transactions
    )
    yield _counter(
        "commit_seconds",
        "Time those transactions took, the commit's flush to disk included",
        committer.transaction_s,
    )
    yield _counter("publish_requests", "Publish requests committed", committer.requests_committed)
    yield _counter(
        "publish_request_seconds",
        "Time publish requests took from arrival at the committer to commit (waiting included)",
        committer.request_s,
    )
    yield _counter(
        "relay_notifications_skipped",
        "Notifications for events the relay had already read (no query needed)",
        relay.notifications_skipped,
    )
    yield _counter(
        "outbox_drains_skipped",
        "Outbox drains left to another hub holding the sequencer (no wait)",
        hub.committer.drains_skipped,
    )
    yield _gauge(
        "last_event_id", "The newest event id this process has relayed", hub.broker.last_id
    )
    yield _counter("file_bytes_served", "Bytes of files sent by /files", counters.file_bytes_served)
    problems = CounterMetricFamily(
        PREFIX + "http_errors", "Requests answered with an error, by status", labels=["status"]
    )
    for status, count in sorted(counters.problems.items()):
        problems.add_metric([str(status)], count)
    yield problems


def _throttle_metrics(throttle: Throttle) -> Iterator[Metric]:
    refused = CounterMetricFamily(
        PREFIX + "rate_limited", "Requests refused by a rate limit (429)", labels=["limit"]
    )
    clients = GaugeMetricFamily(
        PREFIX + "rate_limit_clients", "Clients the rate limiter tracks now", labels=["limit"]
    )
    for name, limiter in (("publish", throttle.publish), ("connect", throttle.connect)):
        if limiter is not None:
            refused.add_metric([name], limiter.refused)
            clients.add_metric([name], len(limiter))
    yield refused
    yield clients


REGISTRY = web.AppKey("sse_hub.metrics_registry", CollectorRegistry)


def add_metrics(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(app))
    ProcessCollector(registry=registry)
    app[REGISTRY] = registry
    app.router.add_get("/metrics", answering_problems(metrics))
    app.on_response_prepare.append(_count_errors)


async def _count_errors(request: web.Request, response: web.StreamResponse) -> None:
    if response.status >= 400:
        hub = request.app.get(HUB)
        if hub is not None:
            problems = hub.counters.problems
            problems[response.status] = problems.get(response.status, 0) + 1


async def metrics(request: web.Request) -> web.Response:
    token = request.app[HUB].settings.metrics_token if HUB in request.app else None
    if token is not None:
        require_bearer(request, token)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": content_type, **NO_STORE})
