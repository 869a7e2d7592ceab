"""Reading a hub's own counters from ``GET /metrics`` (Prometheus text), over a raw connection."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable


def counter_value(text: str, name: str) -> float:
    """The value of the first sample named ``name`` in Prometheus text format; NaN if absent."""
    for line in text.splitlines():
        rest = line[len(name) :] if line.startswith(name) else ""
        if rest.startswith("{"):
            rest = rest.partition("}")[2]
        if rest.startswith(" "):
            return float(rest.split()[0])
    return math.nan


SCRAPE_TIMEOUT_S = 10.0


async def hub_counters(host: str, port: int, names: Iterable[str]) -> dict[str, float]:
    """The samples ``names`` of the hub on ``port``, read in one scrape.

    HTTP/1.0 on a connection of its own: the hub answers and closes, and an idle
    keep-alive connection cannot have timed out between two scrapes.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /metrics HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode("latin-1"))
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"?"
    if status != b"200":
        raise RuntimeError(f"GET /metrics on port {port}: status {status.decode('latin-1')}")
    text = body.decode("utf-8", "replace")
    return {name: counter_value(text, name) for name in names}


BREAKDOWN_COUNTERS = (
    "sse_hub_commits_total",
    "sse_hub_commit_seconds_total",
    "sse_hub_publish_requests_total",
    "sse_hub_publish_request_seconds_total",
    "sse_hub_relay_reads_total",
    "sse_hub_relay_read_seconds_total",
    "sse_hub_events_relayed_total",
    "sse_hub_events_sent_at_commit_total",
)


def hub_breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Means over the window, from the hub's own counters: where a publish's time went."""

    def delta(name: str) -> float:
        return after[name] - before[name]

    def mean_ms(seconds: str, count: str) -> float:
        return delta(seconds) / delta(count) * 1e3 if delta(count) > 0 else math.nan

    return {
        "hub_commits": delta("sse_hub_commits_total"),
        "hub_commit_ms": mean_ms("sse_hub_commit_seconds_total", "sse_hub_commits_total"),
        "hub_request_ms": mean_ms(
            "sse_hub_publish_request_seconds_total", "sse_hub_publish_requests_total"
        ),
        "hub_relay_reads": delta("sse_hub_relay_reads_total"),
        "hub_relay_read_ms": mean_ms(
            "sse_hub_relay_read_seconds_total", "sse_hub_relay_reads_total"
        ),
        "hub_sent_at_commit_share": delta("sse_hub_events_sent_at_commit_total")
        / max(delta("sse_hub_events_relayed_total"), 1),
    }


class HubWindow:
    """The hub's own counters around a measured window: where its time went (``hub_breakdown``).

    For any other target it reads nothing and says nothing.
    """

    def __init__(self, host: str, port: int, *, is_hub: bool) -> None:
        self._host = host
        self._port = port
        self._is_hub = is_hub
        self._before: dict[str, float] | None = None

    async def start(self) -> None:
        if self._is_hub:
            self._before = await hub_counters(self._host, self._port, BREAKDOWN_COUNTERS)

    async def breakdown(self) -> dict[str, float]:
        """The means since ``start``; empty for other targets."""
        if self._before is None:
            return {}
        after = await hub_counters(self._host, self._port, BREAKDOWN_COUNTERS)
        return hub_breakdown(self._before, after)
