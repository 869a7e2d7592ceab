"""Medians, spread and ratios over repeated runs, as a markdown table and as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import HIGHER, HOSTS_ROWS, SCENARIOS_BY_NAME, Metric, RunResult, Scenario

PEERS = ("nchan", "starlette")
TARGET_ORDER = ("hub", "nchan", "starlette")
RESULTS_PAGE = "docs/benchmarks/latest.md"  # from the repository's root
# Measured beside the hub for a target to refer to, never a column of the table.
FLOOR_TARGET = "aiohttp-floor"
CLIENT_BOUND_UTIL = 0.85  # of one core: the client's single thread is the limit


@dataclass(frozen=True)
class Figure:
    median: float
    low: float
    high: float
    count: int
    client_bound: int  # runs where the load client's CPU was the limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "runs": self.count,
            "client_bound_runs": self.client_bound,
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def figure(runs: list[RunResult], metric: Metric, *, check_client: bool) -> Figure | None:
    values: list[float] = []
    bound = 0
    for run in runs:
        if run.error is not None:
            continue
        value = _number(run.result.get(metric.key))
        if value is None:
            continue
        values.append(value * metric.scale)
        if check_client and run.result.get("client_cpu_util", 0.0) >= CLIENT_BOUND_UTIL:
            bound += 1
    if not values:
        return None
    return Figure(statistics.median(values), min(values), max(values), len(values), bound)


def summarise(results: list[RunResult]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """scenario -> metric key -> target -> figure (as a dict)."""
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for name in dict.fromkeys(run.scenario for run in results):
        scenario = SCENARIOS_BY_NAME[name]
        per_metric: dict[str, dict[str, dict[str, Any]]] = {}
        for metric in scenario.metrics:
            per_target: dict[str, dict[str, Any]] = {}
            for target in (*TARGET_ORDER, FLOOR_TARGET):
                runs = [r for r in results if r.scenario == name and r.target == target]
                fig = figure(runs, metric, check_client=scenario.client_bound_check)
                if fig is not None:
                    per_target[target] = fig.as_dict()
            per_metric[metric.key] = per_target
        summary[name] = per_metric
    return summary


def _format(value: float, digits: int) -> str:
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _cell(fig: dict[str, Any] | None, metric: Metric) -> str:
    if fig is None:
        return "n/a"
    text = _format(fig["median"], metric.digits)
    if fig["runs"] > 1:
        text += f" ({_format(fig['min'], metric.digits)}–{_format(fig['max'], metric.digits)})"
    if fig["client_bound_runs"]:
        text += " †"
    return text


def ratio(hub: dict[str, Any] | None, peer: dict[str, Any] | None) -> float | None:
    if hub is None or peer is None or peer["median"] == 0:
        return None
    return float(hub["median"]) / float(peer["median"])


def _ratio_cell(value: float | None, metric: Metric) -> str:
    if value is None:
        return "–"
    good = value >= 1 if metric.better == HIGHER else value <= 1
    return f"{value:.2f}{'' if good else ' ✗'}"


def markdown(summary: dict[str, Any], *, repeats: int) -> str:
    lines = [
        "| scenario | metric | better | hub | nchan | sse-starlette | hub/nchan | hub/starlette |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per_metric in summary.items():
        scenario: Scenario = SCENARIOS_BY_NAME[name]
        for index, metric in enumerate(scenario.metrics):
            figs = per_metric.get(metric.key, {})
            hub = figs.get("hub")
            cells = [_cell(figs.get(target), metric) for target in TARGET_ORDER]
            ratios = [_ratio_cell(ratio(hub, figs.get(peer)), metric) for peer in PEERS]
            arrow = "↑" if metric.better == HIGHER else "↓"
            label = name if index == 0 else ""
            lines.append(
                f"| {label} | {metric.label} | {arrow} | " + " | ".join(cells + ratios) + " |"
            )
    lines.append("")
    lines.append(
        f"Medians of {repeats} run(s) per target, (min–max) when repeated; targets alternate "
        "within each repeat. † = in at least one run the load client used ≥ "
        f"{CLIENT_BOUND_UTIL:.0%} of a core (it, not the server, was the limit: compare server "
        "CPU per event there). ✗ = the hub is worse than that peer on this figure."
    )
    return "\n".join(lines)


def hosts_markdown(results: list[RunResult]) -> str:
    """The hosts scenario's table: one row per hub count, medians over repeats; "" without it."""
    runs = [run for run in results if run.scenario == "hosts" and run.target == "hub"]
    counts = sorted({n for run in runs for n in run.result.get("hub_counts", [])})
    if not counts:
        return ""
    lines = [
        "| hubs | "
        + " | ".join(f"{m.label} {'↑' if m.better == HIGHER else '↓'}" for m in HOSTS_ROWS)
        + " |",
        "|---" * (len(HOSTS_ROWS) + 1) + "|",
    ]
    for count in counts:
        cells = []
        for metric in HOSTS_ROWS:
            per_count = dataclasses.replace(metric, key=f"hubs{count}_{metric.key}")
            fig = figure(runs, per_count, check_client=False)
            cells.append(_cell(fig.as_dict(), metric) if fig else "–")
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "hosts, per hub count: each hub its own process on its own port, one PostgreSQL; "
        "per added hub = the change in PostgreSQL CPU per event from the row above ÷ the hubs "
        "added; relay reads per event are summed over the hubs."
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class Goal:
    text: str
    scenario: str
    metric: str
    limit: float
    better: str
    relative_to: str | None = None  # a peer: the limit is a multiple of its figure


GOALS: tuple[Goal, ...] = (
    Goal("fan-out server CPU per delivered event ≤ nchan's", "fanout",
         "server_us_per_delivery", 1.0, "lower", "nchan"),
    Goal("fan-out delivered events/s ≥ nchan's", "fanout", "delivered_per_s", 1.0, "higher",
         "nchan"),
    Goal("≤ 10 KiB server RSS per idle stream", "idle", "rss_per_stream_kib", 10.0, "lower"),
    Goal("stream set-up: server CPU ≤ 2× nchan's", "idle", "server_us_per_stream_open", 2.0,
         "lower", "nchan"),
    Goal("100,000 streams: ≤ 5 KiB server RSS per stream", "scale", "rss_per_stream_kib", 5.0,
         "lower"),
    Goal("100,000 streams: stream set-up CPU ≤ 2× nchan's", "scale",
         "server_us_per_stream_open", 2.0, "lower", "nchan"),
    Goal("100,000 streams: idle CPU ≤ 90 ms/s (the heartbeat writes alone)", "scale",
         "idle_ms_per_s", 90.0, "lower"),
    Goal("100,000 streams: one event to all in ≤ 1 s", "scale", "fanout_last_ms", 1000.0,
         "lower"),
    Goal("100,000 streams: a reconnect storm back to live in ≤ 30 s", "scale", "storm_back_s",
         30.0, "lower"),
    Goal("100,000 streams: a reconnect storm misses nothing", "scale", "storm_missed", 0.0,
         "lower"),
    Goal("≥ 20,000 events/s published through PostgreSQL (one event per POST)", "publish",
         "accepted_per_s", 20_000, "higher"),
    Goal("≥ 20,000 events/s published through PostgreSQL (batches of 100)", "publish-batch",
         "accepted_per_s", 20_000, "higher"),
    Goal("single-event POST: server CPU ≤ 1.5× aiohttp's own floor", "publish",
         "server_us_per_event", 1.5, "lower", FLOOR_TARGET),
    Goal("p99 publish→receive ≤ 5 ms at 1,000 events/s × 100 subscribers", "latency",
         "latency_p99_ms", 5.0, "lower"),
    Goal("p99.9 publish→receive ≤ 20 ms at 1,000 events/s × 100 subscribers", "latency",
         "latency_p999_ms", 20.0, "lower"),
    Goal("topics: p50 publish→receive ≤ 5 ms at 10,000 events/s", "topics",
         "latency_p50_ms", 5.0, "lower"),
    Goal("replay ≥ 200,000 events/s to one client", "replay", "replayed_per_s", 200_000,
         "higher"),
    Goal("file download ≥ 50% of nginx's MB/s", "file", "mb_per_s", 0.5, "higher", "nchan"),
)  # fmt: skip


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for goal in GOALS:
        figs = summary.get(goal.scenario, {}).get(goal.metric, {})
        hub = figs.get("hub")
        row: dict[str, Any] = {"goal": goal.text, "scenario": goal.scenario}
        if hub is None:
            rows.append({**row, "measured": None, "reached": None, "note": "not measured"})
            continue
        measured = float(hub["median"])
        if goal.relative_to is not None:
            peer = figs.get(goal.relative_to)
            if peer is None:
                rows.append({**row, "measured": measured, "reached": None, "note": "no peer"})
                continue
            value = measured / float(peer["median"])
            shown = f"{value:.2f}× {goal.relative_to} ({measured:,.2f} vs {peer['median']:,.2f})"
        else:
            value = measured
            shown = f"{measured:,.2f}"
        reached = value <= goal.limit if goal.better == "lower" else value >= goal.limit
        factor = value / goal.limit if goal.limit else math.inf
        if goal.better == "lower" and not goal.limit:
            gap = "" if reached else f"{value:,.0f} instead of none"
        elif goal.better == "lower":
            gap = "" if reached else f"{factor:.2f}× over the limit"
        else:
            gap = "" if reached else f"{factor:.0%} of the goal"
        rows.append(
            {
                **row,
                "measured": measured,
                "value": value,
                "shown": shown,
                "reached": reached,
                "note": gap,
                "client_bound_runs": hub.get("client_bound_runs", 0),
            }
        )
    return rows


def goals_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured (hub) | reached | by how much |", "|---|---|---|---|"]
    for row in rows:
        if row["reached"] is None:
            lines.append(f"| {row['goal']} | {row['note']} | – | – |")
            continue
        mark = "yes" if row["reached"] else "no"
        bound = " †" if row.get("client_bound_runs") else ""
        lines.append(f"| {row['goal']} | {row['shown']}{bound} | {mark} | {row['note'] or '–'} |")
    return "\n".join(lines)


def run_description(meta: dict[str, Any]) -> str:
    """How the run was made, in one line: sizes, repeats, database, workers, duration."""
    scale = "".join(
        f" ({name}: {size['streams']:,} streams, hub --workers {size['workers']}, nginx "
        f"{size['workers']} workers, {size['clients']} client processes, 1 run)"
        for name, size in (meta.get("scale") or {}).items()
    )
    return (
        f"`{meta['command']}`: {'quick' if meta['quick'] else 'full'}, {meta['repeats']} "
        f"repeat(s), PostgreSQL {meta['pg']}, hub --workers {meta['hub_workers']}, nginx "
        f"{meta['nginx_workers']} worker{scale}, {meta['elapsed_s'] / 60:.1f} minutes"
    )


def results_page(meta: dict[str, Any], table: str, goals_md: str) -> str:
    """``docs/benchmarks/latest.md``: the figures of one complete run, and where they came from."""
    facts = [
        ("Commit", f"`{meta['commit']}`"),
        ("Date", meta["date"]),
        ("Machine", meta["machine"]),
        ("Run", run_description(meta)),
        ("Versions", ", ".join(f"{name} {version}" for name, version in meta["versions"].items())),
    ]
    if meta.get("note"):
        facts.append(("Note", meta["note"]))
    return (
        "# Benchmarks: the latest complete run\n\n"
        "Written by `make bench` ([`bench/run.py`](../../bench/run.py)) at the end of a run of "
        "every scenario against every target; the next such run replaces this file. What the "
        "scenarios, columns and targets mean: [Benchmarks](../benchmarks.md).\n\n"
        + "".join(f"- **{name}:** {value}\n" for name, value in facts)
        + f"\n## Figures\n\n{table}\n\n## Targets\n\n{goals_md}\n"
    )


def tables(
    results: list[RunResult], *, repeats: int
) -> tuple[dict[str, Any], list[dict[str, Any]], str, str]:
    """A run's summary, its target rows, its figures (with the hosts table) and its targets."""
    summary = summarise(results)
    table = markdown(summary, repeats=repeats)
    hosts_table = hosts_markdown(results)
    if hosts_table:
        table += f"\n\n{hosts_table}"
    goal_rows = goals(summary)
    return summary, goal_rows, table, goals_markdown(goal_rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RESULTS.json``: rewrite the results page from a run's raw results.

    For when the targets or the tables change after a complete run: the figures
    stay that run's own.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path, help="a bench-*.json written by make bench")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / RESULTS_PAGE
    )
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    runs = [RunResult(**run) for run in document["runs"]]
    meta = document["meta"]
    _, _, table, goals_md = tables(runs, repeats=meta["repeats"])
    args.out.write_text(results_page(meta, table, goals_md))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
