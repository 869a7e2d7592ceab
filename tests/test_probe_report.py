"""The probe's figures from what was published and received: one test per criterion."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sse_hub.probe_plan import Plan
from sse_hub.probe_report import (
    BUFFERING_FRACTION,
    ConnectionLog,
    Latency,
    Receipt,
    Report,
    Sent,
    analyse,
    buffering_verdict,
    latency,
    render_json,
    render_text,
)

PLAN = Plan(topic="sse-hub-probe/test", connections=1, duration_s=1.0, rate_per_s=20.0)
GAP_S = 0.05  # 20 events a second


def sent(count: int) -> list[Sent]:
    return [Sent(seq, 1000.0 + (seq - 1) * GAP_S) for seq in range(1, count + 1)]


def paced(events: Sequence[Sent], *, conn: int = 0, after_s: float = 0.005) -> list[Receipt]:
    """Each event ``after_s`` after it was published: a stream nothing holds back."""
    return [Receipt(conn, e.seq, e.sent_at, e.sent_at + after_s) for e in events]


def clumped(events: Sequence[Sent], *, every: int, conn: int = 0) -> list[Receipt]:
    """Events let go ``every`` at a time, when the last of each group was published."""
    receipts = []
    for start in range(0, len(events), every):
        group = events[start : start + every]
        released = group[-1].sent_at + 0.002
        receipts += [
            Receipt(conn, e.seq, e.sent_at, released + 0.0001 * n) for n, e in enumerate(group)
        ]
    return receipts


def report(
    receipts: Sequence[Receipt],
    events: Sequence[Sent],
    *,
    logs: Sequence[ConnectionLog] = (ConnectionLog(),),
    **extra: object,
) -> Report:
    return analyse(
        url="http://hub.example",
        plan=PLAN,
        sent=events,
        receipts=receipts,
        logs=logs,
        **extra,  # type: ignore[arg-type]
    )


def test_everything_received_once_in_order_passes() -> None:
    events = sent(20)
    result = report(paced(events), events)
    figures = result.connections[0]
    assert (figures.expected, figures.received, figures.lost) == (20, 20, 0)
    assert (figures.duplicates, figures.out_of_order, figures.reconnects) == (0, 0, 0)
    assert result.ok
    assert result.problems == []
    assert result.publish_rate_per_s is not None
    assert round(result.publish_rate_per_s, 6) == 20.0


def test_an_event_never_received_is_lost() -> None:
    events = sent(20)
    receipts = [r for r in paced(events) if r.seq not in (5, 9)]
    result = report(receipts, events)
    figures = result.connections[0]
    assert (figures.received, figures.lost, figures.lost_seqs) == (18, 2, (5, 9))
    assert not result.ok
    assert result.problems == ["2 lost on connection 1 (seq 5, 9)"]


def test_lost_sequence_numbers_shown_are_the_first_ten() -> None:
    events = sent(30)
    result = report(paced(events)[:5], events)
    assert result.connections[0].lost_seqs == tuple(range(6, 16))
    assert result.problems == [
        "25 lost on connection 1 (seq 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, ...)"
    ]


def test_an_event_received_twice_is_a_duplicate() -> None:
    events = sent(5)
    receipts = paced(events)
    receipts.insert(3, receipts[2])
    result = report(receipts, events)
    figures = result.connections[0]
    assert (figures.received, figures.duplicates, figures.out_of_order) == (5, 1, 0)
    assert result.problems == ["1 duplicated on connection 1"]


def test_an_event_after_a_later_one_is_out_of_order() -> None:
    events = sent(5)
    first, second, third, fourth, fifth = paced(events)
    result = report([first, third, second, fourth, fifth], events)
    figures = result.connections[0]
    assert (figures.received, figures.duplicates, figures.out_of_order) == (5, 0, 1)
    assert result.problems == ["1 out of order on connection 1"]


def test_figures_are_per_connection_and_summed() -> None:
    events = sent(10)
    receipts = paced(events, conn=0) + [r for r in paced(events, conn=1) if r.seq != 4]
    logs = [ConnectionLog(connects=3, drops=2), ConnectionLog(connects=2, drops=0, resets=1)]
    result = report(receipts, events, logs=logs)
    one, two = result.connections
    assert (one.name, one.lost, one.reconnects, one.planned_reconnects) == ("1", 0, 2, 2)
    assert (two.name, two.lost, two.reconnects, two.planned_reconnects) == ("2", 1, 1, 0)
    overall = result.overall
    assert (overall.name, overall.expected, overall.received, overall.lost) == ("all", 20, 19, 1)
    assert (overall.reconnects, overall.planned_reconnects, overall.resets) == (3, 2, 1)
    assert result.problems == [
        "1 lost on connection 2 (seq 4)",
        "1 reset notice(s) on connection 2: history was truncated",
    ]


def test_publish_errors_and_an_empty_run_fail() -> None:
    events = sent(3)
    failed = report(paced(events), events, publish_errors=2, first_publish_error="503 busy")
    assert failed.problems == ["2 publish(es) failed: 503 busy"]
    assert not failed.ok
    nothing = report([], [])
    assert nothing.problems == []
    assert not nothing.ok
    assert nothing.publish_rate_per_s is None


def test_latency_is_nearest_rank_over_first_arrivals() -> None:
    receipts = [Receipt(0, n, 0.0, n / 1000) for n in range(100, 0, -1)]  # 1 to 100 ms
    assert latency(receipts) == Latency(50.0, 99.0, 100.0)
    assert latency(receipts[:1]) == Latency(100.0, 100.0, 100.0)
    assert latency([]) == Latency(None, None, None)
    events = sent(3)
    late_copy = Receipt(0, 1, events[0].sent_at, events[0].sent_at + 9.0)
    figures = report([*paced(events), late_copy], events).connections[0]
    assert figures.latency.max_ms is not None
    assert round(figures.latency.max_ms, 6) == 5.0  # a duplicate is no second latency


def test_a_paced_stream_is_not_clumped() -> None:
    events = sent(40)
    result = report(paced(events), events)
    assert (result.overall.pairs, result.overall.clumped) == (39, 0)
    assert not result.buffering_suspected
    assert buffering_verdict(result).startswith("not suspected: 0% of 39 pairs")


def test_a_stream_let_go_in_clumps_is_buffering() -> None:
    events = sent(40)
    result = report(clumped(events, every=10), events)
    assert (result.overall.pairs, result.overall.clumped) == (39, 36)
    assert result.buffering_suspected
    assert result.ok  # late is not lost
    assert buffering_verdict(result).startswith("SUSPECTED: 92% of 39 pairs")


def test_buffering_is_suspected_from_the_threshold() -> None:
    events = sent(41)
    pairs_of_two = report(clumped(events, every=2), events)  # half the pairs clumped
    assert pairs_of_two.overall.clumped_fraction == 0.5
    assert pairs_of_two.buffering_suspected
    rare = clumped(events[:6], every=6) + paced(events[6:])
    below = report(rare, events)
    assert below.overall.clumped_fraction is not None
    assert below.overall.clumped_fraction < BUFFERING_FRACTION
    assert not below.buffering_suspected


def test_replayed_events_are_no_clumps() -> None:
    events = sent(40)
    # A reconnect: 10 events published while the connection was away arrive at once.
    receipts = clumped(events[:10], every=10)
    receipts = [Receipt(0, r.seq, r.sent_at, r.received_at, live=False) for r in receipts]
    result = report(receipts + paced(events[10:]), events)
    assert (result.overall.pairs, result.overall.clumped) == (29, 0)
    assert not result.buffering_suspected


def test_events_published_together_are_not_measured() -> None:
    events = [Sent(seq, 1000.0 + seq * 0.001) for seq in range(1, 41)]  # 1 ms apart
    result = report(clumped(events, every=40), events)
    assert result.overall.pairs == 0
    assert not result.buffering_suspected
    assert buffering_verdict(result) == "not measured: 0 pairs of live events, 10 needed"


def test_the_text_report() -> None:
    events = sent(20)
    receipts = paced(events, conn=0) + [r for r in paced(events, conn=1) if r.seq != 7]
    logs = [ConnectionLog(connects=2, drops=1), ConnectionLog()]
    result = report(receipts, events, logs=logs, open_at_start=1)
    assert render_text(result).splitlines() == [
        "sse-hub probe of http://hub.example, topic sse-hub-probe/test",
        "2 connection(s), 20 events published at 20.0/s (asked 20/s), no planned drops, "
        "0 publish error(s)",
        "",
        "conn  received  lost  dup  misordered  reconnects     p50 ms  p99 ms  max ms  clumped",
        "1     20/20     0     0    0           1 (1 planned)  5.0     5.0     5.0     0% of 19",
        "2     19/20     1     0    0           0 (0 planned)  5.0     5.0     5.0     0% of 18",
        "all   39/40     1     0    0           1 (1 planned)  5.0     5.0     5.0     0% of 37",
        "",
        "held back: 1 of 2 streams had been answered when publishing started: something held "
        "the response head back (a proxy buffering the stream, or a slow hub)",
        "buffering: not suspected: 0% of 37 pairs of successive events (published 10 ms or "
        "more apart) arrived less than 10% of their publish gap apart; suspected from 25%",
        "result: FAILED: 1 lost on connection 2 (seq 7)",
    ]


def test_the_json_report() -> None:
    events = sent(20)
    result = report(clumped(events, every=5), events)
    data = json.loads(render_json(result))
    assert data["url"] == "http://hub.example"
    assert data["topic"] == "sse-hub-probe/test"
    assert data["plan"] == {
        "connections": 1,
        "duration_s": 1.0,
        "rate_per_s": 20.0,
        "drop_every_s": 0.0,
        "grace_s": 10.0,
    }
    assert (data["published"], data["publish_errors"], data["open_at_start"]) == (20, 0, 1)
    assert data["buffering"] == {
        "suspected": True,
        "clumped_fraction": 16 / 19,
        "measured_pairs": 19,
        "threshold": BUFFERING_FRACTION,
    }
    (connection,) = data["connections"]
    assert connection["connection"] == "1"
    assert data["overall"]["connection"] == "all"
    assert set(connection) == {
        "connection",
        "expected",
        "received",
        "lost",
        "lost_seqs",
        "duplicates",
        "out_of_order",
        "reconnects",
        "planned_reconnects",
        "resets",
        "latency_ms",
        "measured_pairs",
        "clumped_pairs",
    }
    assert (data["ok"], data["problems"]) == (True, [])
