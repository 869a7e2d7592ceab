"""The hosts scenario's arithmetic: counters read from /metrics, figures per hub count, the table.

Pure functions only; no timing is asserted (benchmarks print figures, tests check logic).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import hosts, procs
from bench.plan import SCENARIOS_BY_NAME, RunResult
from bench.report import hosts_markdown
from bench.scrape import counter_value

METRICS_TEXT = """\
# HELP sse_hub_relay_reads_total Queries the relay made for new events
# TYPE sse_hub_relay_reads_total counter
sse_hub_relay_reads_total 1097.0
# HELP sse_hub_relay_reads_per_second A name that starts like the other
sse_hub_relay_reads_per_second 3.0
sse_hub_http_errors_total{status="404"} 2.0
sse_hub_events_relayed_total 8.02e+02
"""


def test_counter_value_reads_the_sample_with_that_exact_name():
    assert counter_value(METRICS_TEXT, "sse_hub_relay_reads_total") == 1097.0
    assert counter_value(METRICS_TEXT, "sse_hub_events_relayed_total") == 802.0
    assert counter_value(METRICS_TEXT, "sse_hub_http_errors_total") == 2.0
    assert math.isnan(counter_value(METRICS_TEXT, "sse_hub_relay_reads"))
    assert math.isnan(counter_value("", "sse_hub_relay_reads_total"))


def raw(hubs: int, db_cpu_s: float, reads: list[float], hub_cpu_s: list[float]) -> dict[str, Any]:
    return {
        "hubs": hubs,
        "published": 1000,
        "wall_s": 5.0,
        "db_cpu_s": db_cpu_s,
        "relay_reads": reads,
        "events_relayed": [1000.0] * hubs,
        "hub_cpu_s": hub_cpu_s,
        "delivered": 200_000,
        "subscribers": 200,
        "latency_p50_ms": 2.0,
        "latency_p99_ms": 9.0,
        "latency_samples": 50_000,
        "client_cpu_util": 0.3,
        "late_sends": 0,
    }


def test_figures_per_count_and_the_cost_of_each_added_hub():
    one = hosts.count_figures(raw(1, 0.5, [1000.0], [1.0]), None)
    assert one["events_per_s"] == 200.0
    assert one["db_us_per_event"] == one["db_us_per_event_per_hub"] == 500.0
    assert one["db_us_per_added_hub"] is None
    assert one["relay_reads_per_event"] == 1.0
    assert one["relayed_per_hub_per_event"] == 1.0
    assert one["hub_us_per_event_per_hub"] == 1000.0
    assert one["deliveries_per_expected"] == 1.0
    # Each added hub costs the database 50 µs per event: linear, a flat cost per added hub.
    four = hosts.count_figures(raw(4, 0.65, [1000.0, 900.0, 800.0, 700.0], [1.0] * 4), one)
    assert four["db_us_per_event"] == pytest.approx(650.0)
    assert four["db_us_per_event_per_hub"] == pytest.approx(162.5)
    assert four["db_us_per_added_hub"] == pytest.approx(50.0)
    assert four["relay_reads_per_event"] == pytest.approx(3.4)
    assert four["hub_us_per_event_per_hub"] == pytest.approx(1000.0)
    eight = hosts.count_figures(raw(8, 0.85, [1000.0] * 8, [0.75] * 8), four)
    assert eight["db_us_per_added_hub"] == pytest.approx(50.0)

    combined = hosts.combine([one, four, eight])
    assert combined["hub_counts"] == [1, 4, 8]
    assert combined["most_hubs"] == 8
    assert combined["hubs4_db_us_per_event"] == pytest.approx(650.0)
    assert combined["hubs8_relay_reads_per_event"] == pytest.approx(8.0)
    assert combined["db_us_per_added_hub"] == pytest.approx(50.0)
    assert combined["db_per_hub_ratio"] == pytest.approx(850.0 / 8 / 500.0)
    assert combined["hub_per_hub_ratio"] == pytest.approx(0.75)
    assert combined["relay_reads_per_event_per_hub"] == pytest.approx(1.0)
    assert combined["client_cpu_util"] == 0.3
    assert hosts.combine([]) == {}
    assert hosts.combine([one])["db_us_per_added_hub"] is None


def test_cpu_between_readings_counts_new_processes_whole_and_forgets_ended_ones():
    before = {10: 1.0, 11: 2.0, 12: 0.5}
    after = {10: 1.5, 11: 2.25, 13: 0.125}  # 12 ended, 13 was born
    assert procs.run_s_between(before, after) == pytest.approx(0.875)


def test_hosts_table_has_a_row_per_hub_count():
    rounds = [
        hosts.count_figures(raw(1, 0.5, [1000.0], [1.0]), None),
    ]
    rounds.append(hosts.count_figures(raw(2, 0.55, [1000.0, 1000.0], [1.0, 1.0]), rounds[0]))
    result = hosts.combine(rounds)
    table = hosts_markdown(
        [RunResult("hosts", "hub", 0, result), RunResult("fanout", "hub", 0, {"x": 1})]
    )
    lines = table.splitlines()
    assert lines[0].startswith("| hubs | events/s ↑ | PostgreSQL CPU µs per event ↓ |")
    assert lines[2].startswith("| 1 | 200 | 500.0 | 500.0 | – | 1.00 | 1.00 | 1,000.0 |")
    assert lines[3].startswith("| 2 | 200 | 550.0 | 275.0 | 50.0 | 2.00 | 1.00 | 1,000.0 |")
    assert hosts_markdown([RunResult("fanout", "hub", 0, {"x": 1})]) == ""
    scenario = SCENARIOS_BY_NAME["hosts"]
    assert scenario.targets == ("hub",)
    assert scenario.params["hub_counts"] == [1, 2, 4, 8]
    assert scenario.params_for(quick=True)["hub_counts"] == [1, 2]
    assert scenario.params["workers"] == 1
