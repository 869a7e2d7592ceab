"""What ``sse-hub probe`` found: loss, duplicates, order, latency and clumps, as figures.

Pure: ``analyse`` turns what was published and what each connection received
into a ``Report``; ``render_text`` and ``render_json`` print it. ``probe.py``
publishes and receives. The figures, per connection and over all of them:

- lost: published (the hub answered with its id) and not received by the end
  of the grace period; duplicates: received again on the same connection; out
  of order: received after an event published later.
- latency: from just before the publish request to the moment the client
  handed the event over, for each event's first arrival.
- clumps: a proxy that buffers the stream holds events and lets them go
  together. Of two events that followed each other on a connection, published
  at least ``MIN_PUBLISH_GAP_S`` apart, the pair is clumped when they arrived
  less than ``CLUMP_RATIO`` of that gap apart. Only live events count:
  published after the stream that delivered them had opened, since a replay
  after a reconnect arrives in one piece by nature. Buffering is suspected
  when at least ``BUFFERING_FRACTION`` of ``MIN_PAIRS`` or more pairs clumped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sse_hub.probe_plan import Plan

MIN_PUBLISH_GAP_S = 0.01
CLUMP_RATIO = 0.1
BUFFERING_FRACTION = 0.25
MIN_PAIRS = 10
_LOST_SHOWN = 10  # lost sequence numbers listed per connection


@dataclass(frozen=True, slots=True)
class Sent:
    """An event the hub accepted: its sequence number and ``time.time()`` before the request."""

    seq: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class Receipt:
    """An event that connection ``conn`` (from 0) received, at ``received_at``.

    ``live``: published after the stream that delivered it had opened, so not
    part of a replay.
    """

    conn: int
    seq: int
    sent_at: float
    received_at: float
    live: bool = True


@dataclass(frozen=True, slots=True)
class ConnectionLog:
    """What happened to one connection's subscription."""

    connects: int = 1  # streams the hub opened for it
    drops: int = 0  # streams dropped on purpose
    resets: int = 0  # reset notices: the hub no longer had events it needed


# ---- the report


@dataclass(frozen=True, slots=True)
class Latency:
    """Publish-to-receive times in milliseconds; ``None`` without a sample."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    """One connection's figures (``name`` is its number), or the sum over all (``all``)."""

    name: str
    expected: int
    received: int
    lost: int
    lost_seqs: tuple[int, ...]  # the first few
    duplicates: int
    out_of_order: int
    reconnects: int
    planned_reconnects: int
    resets: int
    latency: Latency
    pairs: int  # pairs of live events measured for clumps
    clumped: int

    @property
    def clumped_fraction(self) -> float | None:
        return self.clumped / self.pairs if self.pairs else None


@dataclass(frozen=True)
class Report:
    url: str
    plan: Plan
    published: int
    open_at_start: int  # streams the hub had answered when publishing started
    publish_errors: int
    first_publish_error: str | None
    publish_rate_per_s: float | None
    connections: tuple[Figures, ...]
    overall: Figures

    @property
    def buffering_suspected(self) -> bool:
        fraction = self.overall.clumped_fraction
        return self.overall.pairs >= MIN_PAIRS and (fraction or 0.0) >= BUFFERING_FRACTION

    @property
    def problems(self) -> list[str]:
        """Why the run failed, one phrase each; empty when it passed."""
        found = []
        if self.publish_errors:
            found.append(f"{self.publish_errors} publish(es) failed: {self.first_publish_error}")
        for figures in self.connections:
            where = f"on connection {figures.name}"
            if figures.lost:
                shown = ", ".join(map(str, figures.lost_seqs))
                more = ", ..." if figures.lost > len(figures.lost_seqs) else ""
                found.append(f"{figures.lost} lost {where} (seq {shown}{more})")
            if figures.duplicates:
                found.append(f"{figures.duplicates} duplicated {where}")
            if figures.out_of_order:
                found.append(f"{figures.out_of_order} out of order {where}")
            if figures.resets:
                found.append(f"{figures.resets} reset notice(s) {where}: history was truncated")
        return found

    @property
    def ok(self) -> bool:
        return self.published > 0 and not self.problems


def analyse(
    *,
    url: str,
    plan: Plan,
    sent: Sequence[Sent],
    receipts: Iterable[Receipt],
    logs: Sequence[ConnectionLog],
    open_at_start: int | None = None,
    publish_errors: int = 0,
    first_publish_error: str | None = None,
) -> Report:
    """The report of a run: ``receipts`` in the order they arrived, ``logs`` one per connection."""
    expected = {event.seq for event in sent}
    arrivals: list[list[Receipt]] = [[] for _ in logs]
    for receipt in receipts:
        arrivals[receipt.conn].append(receipt)
    firsts: list[Receipt] = []
    connections = []
    for index, (log, received) in enumerate(zip(logs, arrivals, strict=True)):
        figures, first = _connection(str(index + 1), expected, received, log)
        connections.append(figures)
        firsts += first
    return Report(
        url=url,
        plan=plan,
        published=len(sent),
        open_at_start=len(logs) if open_at_start is None else open_at_start,
        publish_errors=publish_errors,
        first_publish_error=first_publish_error,
        publish_rate_per_s=_rate(sent),
        connections=tuple(connections),
        overall=_overall(connections, firsts),
    )


def _rate(sent: Sequence[Sent]) -> float | None:
    """Events per second from the first publish to the last; ``None`` for fewer than two."""
    if len(sent) < 2:
        return None
    span_s = sent[-1].sent_at - sent[0].sent_at
    return (len(sent) - 1) / span_s if span_s > 0 else None


def _connection(
    name: str, expected: set[int], received: list[Receipt], log: ConnectionLog
) -> tuple[Figures, list[Receipt]]:
    seen: set[int] = set()
    first: list[Receipt] = []
    duplicates = out_of_order = highest = 0
    for receipt in received:
        if receipt.seq in seen:
            duplicates += 1
            continue
        seen.add(receipt.seq)
        if receipt.seq < highest:
            out_of_order += 1
        highest = max(highest, receipt.seq)
        first.append(receipt)
    lost = sorted(expected - seen)
    pairs, clumped = _clumps(first)
    figures = Figures(
        name=name,
        expected=len(expected),
        received=len(expected & seen),
        lost=len(lost),
        lost_seqs=tuple(lost[:_LOST_SHOWN]),
        duplicates=duplicates,
        out_of_order=out_of_order,
        reconnects=max(0, log.connects - 1),
        planned_reconnects=log.drops,
        resets=log.resets,
        latency=latency(first),
        pairs=pairs,
        clumped=clumped,
    )
    return figures, first


def _overall(connections: Sequence[Figures], firsts: list[Receipt]) -> Figures:
    def total(field: str) -> int:
        return sum(getattr(figures, field) for figures in connections)

    return Figures(
        name="all",
        expected=total("expected"),
        received=total("received"),
        lost=total("lost"),
        lost_seqs=(),
        duplicates=total("duplicates"),
        out_of_order=total("out_of_order"),
        reconnects=total("reconnects"),
        planned_reconnects=total("planned_reconnects"),
        resets=total("resets"),
        latency=latency(firsts),
        pairs=total("pairs"),
        clumped=total("clumped"),
    )


def latency(receipts: Sequence[Receipt]) -> Latency:
    """p50, p99 (nearest rank) and the maximum of publish-to-receive times."""
    times = sorted((receipt.received_at - receipt.sent_at) * 1000 for receipt in receipts)
    if not times:
        return Latency()
    return Latency(_rank(times, 0.50), _rank(times, 0.99), times[-1])


def _rank(ordered: list[float], fraction: float) -> float:
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _clumps(first: Sequence[Receipt]) -> tuple[int, int]:
    """How many pairs of successive live events were measured, and how many arrived clumped."""
    pairs = clumped = 0
    for before, after in pairwise(first):
        published_gap = after.sent_at - before.sent_at
        if not (before.live and after.live) or published_gap < MIN_PUBLISH_GAP_S:
            continue
        pairs += 1
        if after.received_at - before.received_at < CLUMP_RATIO * published_gap:
            clumped += 1
    return pairs, clumped


# ---- printing


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _per_s(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}/s"


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.0%}"


def _row(figures: Figures) -> list[str]:
    planned = f"{figures.reconnects} ({figures.planned_reconnects} planned)"
    return [
        figures.name,
        f"{figures.received}/{figures.expected}",
        str(figures.lost),
        str(figures.duplicates),
        str(figures.out_of_order),
        planned,
        _ms(figures.latency.p50_ms),
        _ms(figures.latency.p99_ms),
        _ms(figures.latency.max_ms),
        f"{_percent(figures.clumped_fraction)} of {figures.pairs}",
    ]


_HEADINGS = [
    "conn",
    "received",
    "lost",
    "dup",
    "misordered",
    "reconnects",
    "p50 ms",
    "p99 ms",
    "max ms",
    "clumped",
]


def buffering_verdict(report: Report) -> str:
    overall = report.overall
    measured = (
        f"{_percent(overall.clumped_fraction)} of {overall.pairs} pairs of successive events "
        f"(published {MIN_PUBLISH_GAP_S * 1000:g} ms or more apart) arrived less than "
        f"{CLUMP_RATIO:.0%} of their publish gap apart; suspected from {BUFFERING_FRACTION:.0%}"
    )
    if overall.pairs < MIN_PAIRS:
        return f"not measured: {overall.pairs} pairs of live events, {MIN_PAIRS} needed"
    if report.buffering_suspected:
        return f"SUSPECTED: {measured}. A proxy holds the stream and lets it go in clumps"
    return f"not suspected: {measured}"


def _held_back(report: Report) -> list[str]:
    if report.open_at_start >= len(report.connections):
        return []
    return [
        f"held back: {report.open_at_start} of {len(report.connections)} streams had been "
        "answered when publishing started: something held the response head back (a proxy "
        "buffering the stream, or a slow hub)"
    ]


def render_text(report: Report) -> str:
    plan = report.plan
    drops = f"a drop every {plan.drop_every_s:g} s" if plan.drop_every_s else "no planned drops"
    rows = [_HEADINGS, *(_row(figures) for figures in report.connections), _row(report.overall)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADINGS))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    problems = report.problems
    if report.ok:
        result = "OK: nothing lost, duplicated or misordered"
    elif problems:
        result = "FAILED: " + "; ".join(problems)
    else:
        result = "FAILED: no event was published"
    return "\n".join(
        [
            f"sse-hub probe of {report.url}, topic {plan.topic}",
            f"{len(report.connections)} connection(s), {report.published} events published at "
            f"{_per_s(report.publish_rate_per_s)} (asked {plan.rate_per_s:g}/s), {drops}, "
            f"{report.publish_errors} publish error(s)",
            "",
            *table,
            "",
            *_held_back(report),
            f"buffering: {buffering_verdict(report)}",
            f"result: {result}",
        ]
    )


def _figures_json(figures: Figures) -> dict[str, Any]:
    return {
        "connection": figures.name,
        "expected": figures.expected,
        "received": figures.received,
        "lost": figures.lost,
        "lost_seqs": list(figures.lost_seqs),
        "duplicates": figures.duplicates,
        "out_of_order": figures.out_of_order,
        "reconnects": figures.reconnects,
        "planned_reconnects": figures.planned_reconnects,
        "resets": figures.resets,
        "latency_ms": {
            "p50": figures.latency.p50_ms,
            "p99": figures.latency.p99_ms,
            "max": figures.latency.max_ms,
        },
        "measured_pairs": figures.pairs,
        "clumped_pairs": figures.clumped,
    }


def render_json(report: Report) -> str:
    plan = report.plan
    return json.dumps(
        {
            "url": report.url,
            "topic": plan.topic,
            "plan": {
                "connections": plan.connections,
                "duration_s": plan.duration_s,
                "rate_per_s": plan.rate_per_s,
                "drop_every_s": plan.drop_every_s,
                "grace_s": plan.grace_s,
            },
            "published": report.published,
            "open_at_start": report.open_at_start,
            "publish_rate_per_s": report.publish_rate_per_s,
            "publish_errors": report.publish_errors,
            "connections": [_figures_json(figures) for figures in report.connections],
            "overall": _figures_json(report.overall),
            "buffering": {
                "suspected": report.buffering_suspected,
                "clumped_fraction": report.overall.clumped_fraction,
                "measured_pairs": report.overall.pairs,
                "threshold": BUFFERING_FRACTION,
            },
            "ok": report.ok,
            "problems": report.problems,
        }
    )
