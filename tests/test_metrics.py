"""``/metrics`` as Prometheus reads it: parsed with prometheus-client's own parsers."""

from __future__ import annotations

import os

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.sse_client import open_stream
from tests.test_stream import publish
from tests.waiting import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: TestServer, accept: str | None = None) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/metrics"), headers=headers) as response,
    ):
        assert response.status == 200
        return response.headers["Content-Type"], await response.text()


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_metrics_count_what_happened(start_hub: HubFactory) -> None:
    hub = await start_hub()
    live = await open_stream(hub.port, "/events?topic=m")
    try:
        await live.started()
        for n in range(3):
            await publish(hub, "m", f"event {n}")
        await live.events(3)
        replay = await open_stream(hub.port, "/events?topic=m&lastEventID=earliest")
        try:
            await replay.events(3)
            async with (
                aiohttp.ClientSession() as session,
                session.post(hub.make_url("/events"), data=b"x") as response,
            ):
                assert response.status == 415
            content_type, text = await scrape(hub)
        finally:
            replay.close()
    finally:
        live.close()
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(text)
    assert value(found, "sse_hub_streams_open") == 2
    assert value(found, "sse_hub_streams_total") == 2
    assert value(found, "sse_hub_events_published_total") == 3
    assert value(found, "sse_hub_events_relayed_total") == 3
    assert value(found, "sse_hub_events_sent_at_commit_total") == 3  # each followed the last
    assert value(found, "sse_hub_commits_total") == 3
    assert value(found, "sse_hub_publish_requests_total") == 3
    commit_s = value(found, "sse_hub_commit_seconds_total")
    assert 0 < commit_s <= value(found, "sse_hub_publish_request_seconds_total") < 60
    assert value(found, "sse_hub_events_replayed_total") == 3  # counted while the stream is open
    assert value(found, "sse_hub_events_delivered_total") == 6  # 3 live + 3 replayed
    assert value(found, "sse_hub_bytes_sent_total") >= len(b"retry: 3000\n") * 2 + 6 * 20
    assert value(found, "sse_hub_slow_subscriber_catch_ups_total") == 0
    assert value(found, "sse_hub_slow_subscriber_disconnects_total") == 0
    assert value(found, "sse_hub_relay_connected") == 1
    assert value(found, "sse_hub_listener_reconnects_total") == 0
    assert value(found, "sse_hub_last_event_id") == 3
    assert 0 <= value(found, "sse_hub_relay_lag_seconds") < 60
    assert value(found, "sse_hub_file_bytes_served_total") == 0
    assert value(found, "sse_hub_http_errors_total", status="415") == 1
    assert value(found, "sse_hub_worker_info", pid=str(os.getpid())) == 1
    assert value(found, "sse_hub_rate_limited_total", limit="publish") == 0
    assert value(found, "process_open_fds") > 0

    counters = app_of(hub)[HUB].counters
    await wait_until(lambda: counters.streams_open == 0)
    assert value(samples((await scrape(hub))[1]), "sse_hub_streams_open") == 0


async def test_openmetrics_when_asked(hub: TestServer) -> None:
    content_type, text = await scrape(hub, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    parsed = openmetrics_families(text)  # type: ignore[no-untyped-call]
    names = {family.name for family in parsed}
    assert {"sse_hub_streams_open", "sse_hub_events_delivered", "sse_hub_worker"} <= names


async def test_each_hub_has_its_own_registry(start_hub: HubFactory) -> None:
    one, two = await start_hub(), await start_hub()
    await publish(one, "t", "only through one")
    first, second = samples((await scrape(one))[1]), samples((await scrape(two))[1])
    assert value(first, "sse_hub_events_published_total") == 1
    assert value(second, "sse_hub_events_published_total") == 0


async def test_a_metrics_token_protects_metrics(start_hub: HubFactory) -> None:
    secret = "m" * 24
    server = await start_hub(metrics_token=secret)
    url = server.make_url("/metrics")
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer " + "x" * 24}):
            async with session.get(url, headers=headers) as response:
                assert response.status == 401
                assert response.content_type == "application/problem+json"
                assert "sse_hub_" not in await response.text()
        async with session.get(url, headers={"Authorization": f"Bearer {secret}"}) as response:
            assert response.status == 200
            assert "sse_hub_streams_open" in await response.text()
        async with session.get(server.make_url("/healthz")) as response:
            assert response.status == 200  # health checks stay open
