"""The scenarios: what the client does for each, with full and quick sizes, and what is reported.

A ``Metric`` names one figure of a client result, its unit and which way is
better; the report takes the median over repeats and the hub/peer ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HIGHER = "higher"
LOWER = "lower"

GIB = 2**30


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str
    scale: float = 1.0  # multiply the client's figure by this for display
    digits: int = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    client: str  # the client's scenario function
    title: str
    params: dict[str, Any]
    quick: dict[str, Any]
    metrics: tuple[Metric, ...]
    targets: tuple[str, ...] = ("hub", "nchan", "starlette")
    client_bound_check: bool = False
    notes: str = ""
    timeout_s: float = 300.0
    max_repeats: int | None = None  # runs per target at most, whatever --repeat says

    def params_for(self, *, quick: bool) -> dict[str, Any]:
        return {**self.params, **(self.quick if quick else {})}


RSS_MIB = Metric("peak_rss_kib", "server peak RSS (MiB)", LOWER, 1 / 1024, 1)
CLIENT_CPU = Metric("client_cpu_util", "load client CPU (cores)", LOWER, 1.0, 2)
SERVER_UTIL = Metric("server_cpu_util", "server CPU (cores)", LOWER, 1.0, 2)
OTHER_CPU = Metric("other_cpu_util", "other busy CPU: kernel, noise (cores)", LOWER, 1.0, 2)

BROADCAST_METRICS = (
    Metric("delivered_per_s", "delivered events/s", HIGHER, 1.0, 0),
    Metric("server_us_per_delivery", "server CPU µs per delivered event", LOWER, 1.0, 2),
    Metric("latency_p50_ms", "p50 publish→receive (ms)", LOWER, 1.0, 2),
    Metric("latency_p99_ms", "p99 publish→receive (ms)", LOWER, 1.0, 2),
    RSS_MIB,
    SERVER_UTIL,
    Metric("db_us_per_delivery", "PostgreSQL CPU µs per delivered event", LOWER, 1.0, 2),
    CLIENT_CPU,
    OTHER_CPU,
)

TOPICS_LATENCY_RATE = 10_000  # events/s: a quarter of what the hub and nchan sustain here
ANSWER_P50 = Metric("answer_p50_ms", "p50 publish→answered (201) (ms)", LOWER, 1.0, 2)
GROUP_COMMIT = (
    Metric(
        "hub_request_ms", "hub: mean time in group commit, waiting included (ms)", LOWER, 1.0, 2
    ),
    Metric("hub_commit_ms", "hub: mean sequencer transaction, fsync included (ms)", LOWER, 1.0, 2),
)
TOPICS_METRICS = (
    *(
        Metric(
            metric.key,
            metric.label.replace(" (ms)", f" at {TOPICS_LATENCY_RATE:,} events/s (ms)"),
            metric.better,
            metric.scale,
            metric.digits,
        )
        if metric.key.startswith("latency_")
        else metric
        for metric in BROADCAST_METRICS
    ),
    ANSWER_P50,
    *GROUP_COMMIT,
)

SCALE_METRICS = (
    Metric("streams_connected", "streams connected", HIGHER, 1.0, 0),
    Metric("streams_per_s", "streams opened per second", HIGHER, 1.0, 0),
    Metric("server_us_per_stream_open", "server CPU µs per stream opened", LOWER, 1.0, 0),
    Metric("db_us_per_stream_open", "PostgreSQL CPU µs per stream opened", LOWER, 1.0, 0),
    Metric("rss_per_stream_kib", "server RSS per stream (KiB)", LOWER, 1.0, 2),
    Metric("rss_kib", "server RSS with all streams (MiB)", LOWER, 1 / 1024, 0),
    Metric("idle_ms_per_s", "server CPU while the streams idle (ms/s)", LOWER, 1.0, 1),
    Metric(
        "fanout_last_ms", "one event to every stream: until the last has it (ms)", LOWER, 1.0, 0
    ),
    Metric("fanout_cpu_ms", "one event to every stream: server CPU (ms)", LOWER, 1.0, 0),
    Metric("storm_restart_s", "storm: until the new hub listens (s)", LOWER, 1.0, 1),
    Metric("storm_back_s", "storm: until every stream is back (s)", LOWER, 1.0, 1),
    Metric("storm_caught_up_s", "storm: until every stream has caught up (s)", LOWER, 1.0, 1),
    Metric("storm_missed", "storm: events missed", LOWER, 1.0, 0),
    Metric("storm_duplicates", "storm: events received twice", LOWER, 1.0, 0),
    Metric("storm_db_cpu_s", "storm: PostgreSQL CPU (s)", LOWER, 1.0, 1),
    Metric("storm_server_cpu_s", "storm: new hub's CPU until all caught up (s)", LOWER, 1.0, 1),
)


# The storm's event flow, in deliveries a second. Each delivery costs the server some
# 20 µs of CPU and the load client some 15 on these two cores (one event to 100,000
# streams: about 2 s and 1.5 s): 10,000 a second (0.1 events/s at 100,000 streams, 1 at
# 10,000) take a sixth of the machine; 50,000 would take all of it, and starve the restart.
STORM_DELIVERIES_PER_S = 10_000


def scale_params(streams: int, processes: int, **more: Any) -> dict[str, Any]:
    """The scale scenario at ``streams`` streams: server workers and client processes alike."""
    return {
        "streams": streams,
        "workers": processes,  # hub --workers, nginx worker_processes
        "clients": processes,  # load client processes, each from its own source address
        "warm_streams": 8,
        "settle_s": 3.0,
        "connect_timeout_s": 240.0,
        "idle_window_s": 15.0,  # one heartbeat period, 15 s on every target
        "fanout_events": 5,
        "fanout_gap_s": 2.0,
        "fanout_timeout_s": 30.0,
        # nchan keeps messages in nginx's shared memory, which a restart discards:
        # no resume across it, so the storm runs against the hub only.
        "storm_targets": ["hub"],
        "storm_rate": min(5.0, STORM_DELIVERIES_PER_S / streams),  # events/s
        "storm_lead_s": 3.0,
        "storm_timeout_s": 240.0,
        "storm_tail_s": 2.0,
        **more,
    }


SCALE_NOTES = (
    "streams on one topic, opened by several load client processes from their own loopback "
    "addresses; the hub with --workers, nginx with as many workers (SO_REUSEPORT both); "
    "CPU and RSS of the server's whole process tree; the storm restarts the hub (hub only: "
    "nchan's messages do not outlive an nginx restart)"
)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="fanout",
        client="broadcast",
        title="fan-out: 1,000 subscribers on one topic",
        params={
            "subscribers": 1000,
            "topics": 1,
            "publishers": 4,
            "batch": 1,
            "window_events": 20,
            "sample_every": 50,
            "warmup_s": 2.0,
            "measure_s": 10.0,
            "connect_timeout_s": 60.0,
        },
        quick={"warmup_s": 1.0, "measure_s": 3.0},
        metrics=BROADCAST_METRICS,
        client_bound_check=True,
        notes="each publish goes to every subscriber; publishers keep at most 20 events "
        "in flight, so the rate is what the target sustains end to end",
    ),
    Scenario(
        name="topics",
        client="broadcast",
        title="topics: 1,000 subscribers, each on its own topic",
        params={
            "subscribers": 1000,
            "topics": 1000,
            "publishers": 16,
            "batch": 100,
            "window_events": 2000,
            "sample_every": 50,
            "warmup_s": 2.0,
            "measure_s": 10.0,
            "connect_timeout_s": 60.0,
            # Latency at a rate every target sustains, not in the closed loop (see notes).
            "latency_rate": TOPICS_LATENCY_RATE,
            "latency_warmup_s": 1.0,
            "latency_s": 6.0,
            "drain_timeout_s": 10.0,
        },
        quick={"warmup_s": 1.0, "measure_s": 3.0, "latency_s": 3.0},
        metrics=TOPICS_METRICS,
        client_bound_check=True,
        notes="events round-robin over the topics; the hub takes batches of 100 per POST, "
        "nchan and sse-starlette one event per POST (their APIs have no batch); "
        "throughput and CPU as fast as delivered (at most 2,000 events in flight), then "
        f"latency in a second phase at a steady {TOPICS_LATENCY_RATE:,} events/s: in the "
        "first, latency would only be the in-flight window over the rate",
    ),
    Scenario(
        name="idle",
        client="idle",
        title="idle: open streams, nothing published",
        params={
            "streams": 10_000,
            "settle_s": 3.0,
            "connect_timeout_s": 120.0,
            # One full heartbeat period (15 s for every target) of doing nothing.
            "idle_window_s": 15.0,
        },
        quick={"streams": 2000, "settle_s": 1.5, "idle_window_s": 5.0},
        metrics=(
            Metric("rss_per_stream_kib", "server RSS per idle stream (KiB)", LOWER, 1.0, 2),
            Metric("rss_kib", "server RSS with all streams (MiB)", LOWER, 1 / 1024, 1),
            Metric("streams_per_s", "streams opened per second", HIGHER, 1.0, 0),
            Metric("server_us_per_stream_open", "server CPU µs per stream opened", LOWER, 1.0, 0),
            Metric("idle_ms_per_s", "server CPU while the streams idle (ms/s)", LOWER, 1.0, 1),
        ),
        notes="RSS growth of the server's processes from one warm stream to N, "
        "divided by N, sampled after the streams settle; then the server's CPU over one "
        "heartbeat period with nothing published",
    ),
    Scenario(
        name="latency",
        client="latency",
        title="latency: 100 subscribers, 1,000 events/s steady",
        params={
            "subscribers": 100,
            "rate": 1000.0,
            "publishers": 16,
            "sample_every": 5,
            "warmup_s": 2.0,
            "measure_s": 10.0,
            "connect_timeout_s": 60.0,
        },
        quick={"warmup_s": 1.0, "measure_s": 4.0},
        metrics=(
            Metric("latency_p50_ms", "p50 publish→receive (ms)", LOWER, 1.0, 2),
            Metric("latency_p99_ms", "p99 publish→receive (ms)", LOWER, 1.0, 2),
            Metric("latency_p999_ms", "p99.9 publish→receive (ms)", LOWER, 1.0, 2),
            ANSWER_P50,
            *GROUP_COMMIT,
            Metric(
                "hub_sent_at_commit_share",
                "hub: events sent at commit, without a read",
                HIGHER,
                1.0,
                2,
            ),
            Metric("delivered_per_s", "delivered events/s", HIGHER, 1.0, 0),
            Metric("server_us_per_delivery", "server CPU µs per delivered event", LOWER, 1.0, 2),
            CLIENT_CPU,
            OTHER_CPU,
        ),
        client_bound_check=True,
        notes="open loop: one POST per event at a fixed rate on 16 keep-alive connections; "
        "latency sampled on 20 of the 100 streams, send time taken just before the POST",
    ),
    Scenario(
        name="publish",
        client="publish",
        title="publish: 50 concurrent publishers, one event per request",
        params={
            "publishers": 50,
            "batch": 1,
            "warmup_s": 1.0,
            "measure_s": 8.0,
        },
        quick={"measure_s": 3.0},
        metrics=(
            Metric("accepted_per_s", "events/s accepted", HIGHER, 1.0, 0),
            Metric("server_us_per_event", "server CPU µs per event", LOWER, 1.0, 1),
            Metric("db_us_per_event", "PostgreSQL CPU µs per event", LOWER, 1.0, 1),
            CLIENT_CPU,
        ),
        notes="the hub's figure is through PostgreSQL (committed); nchan's and "
        "sse-starlette's are in memory",
    ),
    Scenario(
        name="publish-batch",
        client="publish",
        title="publish: 50 concurrent publishers, batches of 100 events",
        params={
            "publishers": 50,
            "batch": 100,
            "warmup_s": 1.0,
            "measure_s": 8.0,
        },
        quick={"measure_s": 3.0},
        metrics=(
            Metric("accepted_per_s", "events/s accepted", HIGHER, 1.0, 0),
            Metric("server_us_per_event", "server CPU µs per event", LOWER, 1.0, 2),
            Metric("db_us_per_event", "PostgreSQL CPU µs per event", LOWER, 1.0, 2),
        ),
        targets=("hub",),
        notes="only the hub takes batches",
    ),
    Scenario(
        name="replay",
        client="replay",
        title="replay: one client resuming 100,000 events behind",
        params={
            "events": 100_000,
            "publishers": 8,
            "fill_timeout_s": 120.0,
            "read_timeout_s": 120.0,
        },
        quick={"events": 20_000},
        metrics=(
            Metric("replayed_per_s", "events/s to one client", HIGHER, 1.0, 0),
            Metric("server_us_per_event", "server CPU µs per event", LOWER, 1.0, 2),
            Metric("db_cpu_s", "PostgreSQL CPU s", LOWER, 1.0, 2),
            CLIENT_CPU,
        ),
        targets=("hub", "nchan"),
        client_bound_check=True,
        notes="the hub reads history from PostgreSQL (Last-Event-ID); nchan from its "
        "in-memory buffer (first message 'oldest'); sse-starlette keeps no history",
        timeout_s=400.0,
    ),
    Scenario(
        name="file",
        client="download",
        title="file: one 2 GiB download (256 MiB when quick)",
        params={"size": 2 * GIB, "timeout_s": 300.0, "path": "/files/bench-file.bin"},
        quick={"size": GIB // 4},
        metrics=(
            Metric("mb_per_s", "MB/s", HIGHER, 1.0, 0),
            Metric("server_cpu_s_per_gib", "server CPU s per GiB", LOWER, 1.0, 2),
            CLIENT_CPU,
        ),
        targets=("hub", "nchan"),
        client_bound_check=True,
        notes="the nchan column is the same nginx serving the file statically (sendfile on)",
        timeout_s=400.0,
    ),
)

SCENARIOS = (
    *SCENARIOS,
    Scenario(
        name="scale",
        client="scale",
        title="scale: 100,000 streams, 8 server workers, 8 client processes "
        "(quick: 10,000 on 2 and 2)",
        params=scale_params(100_000, 8),
        quick=scale_params(10_000, 2),
        metrics=SCALE_METRICS,
        targets=("hub", "nchan"),
        notes=SCALE_NOTES,
        timeout_s=1200.0,
        max_repeats=1,
    ),
    Scenario(
        name="scale-10k",
        client="scale",
        title="scale at 10,000 streams, 8 server workers, 8 client processes "
        "(quick: 2,000 on 2 and 2)",
        params=scale_params(10_000, 8),
        quick=scale_params(2_000, 2),
        metrics=SCALE_METRICS,
        targets=("hub", "nchan"),
        notes=SCALE_NOTES,
        timeout_s=600.0,
        max_repeats=1,
    ),
)

# The hosts scenario: one row per hub count in a table of its own (``report.hosts_markdown``),
# each figure of ``bench.hosts.count_figures``; the main table has the headline below.
HOSTS_ROWS = (
    Metric("events_per_s", "events/s", HIGHER, 1.0, 0),
    Metric("db_us_per_event", "PostgreSQL CPU µs per event", LOWER, 1.0, 1),
    Metric("db_us_per_event_per_hub", "PostgreSQL CPU µs per event per hub", LOWER, 1.0, 1),
    Metric("db_us_per_added_hub", "PostgreSQL CPU µs per event per added hub", LOWER, 1.0, 1),
    Metric("relay_reads_per_event", "relay reads per event", LOWER, 1.0, 2),
    Metric("relayed_per_hub_per_event", "events relayed per hub ÷ published", HIGHER, 1.0, 2),
    Metric("hub_us_per_event_per_hub", "hub CPU µs per event per hub", LOWER, 1.0, 1),
    Metric("latency_p50_ms", "p50 publish→receive (ms)", LOWER, 1.0, 2),
    Metric("latency_p99_ms", "p99 publish→receive (ms)", LOWER, 1.0, 2),
    Metric("client_cpu_util", "load client CPU (cores)", LOWER, 1.0, 2),
)


def hosts_params(hub_counts: list[int], **more: Any) -> dict[str, Any]:
    return {
        "hub_counts": hub_counts,
        "workers": 1,  # each hub is one process, whatever --hub-workers says
        # 200 subscribers in all, split evenly over the hubs, at 200 events/s: 40,000
        # deliveries/s, under half of the two cores (hub and client), so that the hubs'
        # relays and PostgreSQL are not starved; fan-out itself is measured by `fanout`.
        "subscribers": 200,
        "rate": 200.0,  # events/s, one per POST, all to the first hub
        "publishers": 8,
        "sample_every": 4,  # of each hub's streams: every 4th parses send times
        "warmup_s": 2.0,
        "measure_s": 8.0,
        "connect_timeout_s": 60.0,
        **more,
    }


SCENARIOS = (
    *SCENARIOS,
    Scenario(
        name="hosts",
        client="hosts",
        title="hosts: 1, 2, 4 and 8 hubs on one PostgreSQL, 200 subscribers, 200 events/s "
        "(quick: 1 and 2 hubs)",
        params=hosts_params([1, 2, 4, 8]),
        quick=hosts_params([1, 2], warmup_s=1.0, measure_s=4.0),
        metrics=(
            Metric(
                "db_per_hub_ratio",
                "PostgreSQL CPU per event per hub: most hubs ÷ 1 hub",
                LOWER,
                1.0,
                2,
            ),
            Metric(
                "db_us_per_added_hub",
                "PostgreSQL CPU µs per event per added hub, 1 hub to the most",
                LOWER,
                1.0,
                1,
            ),
            Metric(
                "relay_reads_per_event_per_hub",
                "relay reads per event per hub, most hubs",
                LOWER,
                1.0,
                2,
            ),
            Metric(
                "hub_per_hub_ratio", "hub CPU per event per hub: most hubs ÷ 1 hub", LOWER, 1.0, 2
            ),
            Metric("latency_p99_ms", "p99 publish→receive, most hubs (ms)", LOWER, 1.0, 2),
            CLIENT_CPU,
        ),
        targets=("hub",),
        client_bound_check=True,
        notes="each hub its own `sse-hub serve --workers 1` on its own port, all on the bench's "
        "PostgreSQL; the subscribers split evenly over the hubs, every event posted to the first; "
        "per hub count: see the hosts table (hub only: nchan and sse-starlette have no shared "
        "database)",
        timeout_s=900.0,
    ),
)

SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


@dataclass
class RunResult:
    scenario: str
    target: str
    repeat: int
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
