"""``sse-hub probe``'s flags: defaults, the number of events, and each limit as a usage error."""

from __future__ import annotations

from typing import Any

import pytest

from sse_hub.errors import ConfigError
from sse_hub.probe_plan import MAX_RECEIPTS, TOPIC_PREFIX, Plan, make_plan

DEFAULTS = {
    "topic": None,
    "connections": "4",
    "duration": "10s",
    "rate": "20",
    "drop_every": "0",
    "grace": "10s",
}


def plan(**flags: Any) -> Plan:
    return make_plan(**{**DEFAULTS, **flags})


def test_the_defaults_and_a_topic_of_the_runs_own() -> None:
    first, second = plan(), plan()
    assert first.topic.startswith(TOPIC_PREFIX)
    assert first.topic != second.topic
    assert (first.connections, first.duration_s, first.rate_per_s) == (4, 10.0, 20.0)
    assert (first.drop_every_s, first.grace_s, first.events) == (0.0, 10.0, 200)


def test_flags_are_read_as_durations_and_rates() -> None:
    chosen = plan(
        topic="checks/probe", connections="8", duration="2m", rate="2.5", drop_every="15s"
    )
    assert chosen == Plan(
        topic="checks/probe",
        connections=8,
        duration_s=120.0,
        rate_per_s=2.5,
        drop_every_s=15.0,
        grace_s=10.0,
    )
    assert chosen.events == 300


@pytest.mark.parametrize(
    ("duration_s", "rate", "events"),
    [(10.0, 20.0, 200), (3.0, 0.5, 2), (10.0, 0.7, 7), (1.0, 0.1, 1), (0.5, 3.0, 2)],
)
def test_events_are_the_publish_slots_that_start_within_the_duration(
    duration_s: float, rate: float, events: int
) -> None:
    assert Plan(topic="t", duration_s=duration_s, rate_per_s=rate).events == events


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"connections": "65"}, "--connections: must be between 1 and 64, got 65"),
        ({"connections": "x"}, "--connections: expected a number of connections, got 'x'"),
        ({"duration": "61m"}, "--duration: must be at most 3600s, got '61m'"),
        ({"duration": "0s"}, "--duration: must be greater than zero"),
        ({"rate": "1001"}, "--rate: must be between 0.1 and 1000, got 1001"),
        ({"rate": "nan"}, "--rate: must be between 0.1 and 1000, got nan"),
        ({"rate": "fast"}, "--rate: expected events per second, e.g. 20, got 'fast'"),
        ({"drop_every": "-1"}, "--drop-every: expected a number with unit"),
        ({"drop_every": "1m"}, "--drop-every: 1m is not shorter than --duration 10s"),
        ({"grace": "11m"}, "--grace: must be at most 600s"),
        ({"topic": "*"}, "--topic: '*' is a pattern; the probe publishes to one topic"),
        ({"topic": "a\nb"}, "--topic: topic must not contain control characters"),
        ({"topic": ""}, "--topic: topic must be 1 to 256 bytes"),
        (
            {"connections": "64", "rate": "1000"},
            f"--rate: 10000 events on 64 connections is over {MAX_RECEIPTS} receipts",
        ),
    ],
)
def test_each_limit_is_a_usage_error_naming_its_flag(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        plan(**flags)
    assert str(refused.value).startswith(message)
