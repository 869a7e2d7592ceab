"""The hosts scenario: N hub processes, each standing for a host, on one PostgreSQL.

``run.py`` calls ``measure`` for a scenario whose client is ``hosts``, with the
first hub already running. For each count in ``hub_counts`` (ascending) it
starts hubs until that many run (``sse-hub serve --workers 1``, each on a port
of its own, all on the bench's database), then runs one load client process
(``python -m bench.client``, scenario ``hosts``, played by
``bench.hosts_client``) against them: the subscribers split evenly over the
hubs, one steady stream of events posted to the first hub. The hubs it starts
join ``servers``: the caller stops every one of them, also on failure.

Each hub's relay reads every event from PostgreSQL, so the database's read
work grows with the hubs. The figures per count (``count_figures``) show by
how much: PostgreSQL's CPU per event, per event and hub, and per event and
added hub (from the count before); relay reads per event; hub CPU per event and
hub; publish→receive latency over the subscribers of every hub. A cost that
grows linearly with the hubs has a flat cost per added hub; one that grows
with their square has a cost per added hub that grows with the count.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.jobs import run_client_job
from bench.targets import HubTarget, Server

CLIENT_MARGIN_S = 60.0  # beyond a round's own phases, before its client counts as stuck

# Figures of each hub count, in the report's per-count table (``plan.HOSTS_ROWS``).
ROUND_KEYS = (
    "events_per_s",
    "db_us_per_event",
    "db_us_per_event_per_hub",
    "db_us_per_added_hub",
    "relay_reads_per_event",
    "relayed_per_hub_per_event",
    "hub_us_per_event_per_hub",
    "latency_p50_ms",
    "latency_p99_ms",
    "client_cpu_util",
)


def _per_event_us(cpu_s: float, events: int) -> float:
    return cpu_s / events * 1e6 if events > 0 else math.nan


def count_figures(raw: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """One hub count's figures from its client's raw counts (and the count before it)."""
    hubs = int(raw["hubs"])
    events = int(raw["published"])
    db_us = _per_event_us(raw["db_cpu_s"], events)
    added: float | None = None
    if previous is not None and hubs > previous["hubs"]:
        added = (db_us - previous["db_us_per_event"]) / (hubs - previous["hubs"])
    relayed = raw["events_relayed"]
    return {
        "hubs": hubs,
        "events": events,
        "events_per_s": events / raw["wall_s"],
        "db_us_per_event": db_us,
        "db_us_per_event_per_hub": db_us / hubs,
        "db_us_per_added_hub": added,
        "relay_reads_per_event": sum(raw["relay_reads"]) / events if events else math.nan,
        "relayed_per_hub_per_event": sum(relayed) / len(relayed) / events if events else math.nan,
        "hub_us_per_event_per_hub": _per_event_us(sum(raw["hub_cpu_s"]), events) / hubs,
        "deliveries_per_expected": raw["delivered"] / max(events * raw["subscribers"], 1),
        "latency_p50_ms": raw["latency_p50_ms"],
        "latency_p99_ms": raw["latency_p99_ms"],
        "latency_samples": raw["latency_samples"],
        "client_cpu_util": raw["client_cpu_util"],
        "late_sends": raw["late_sends"],
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator or math.isnan(denominator):
        return None
    return numerator / denominator


def combine(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every count's figures as ``hubs<N>_<key>``, and the headline: the most hubs against one.

    The cost per added hub over the whole range is (cost at the most hubs - cost
    at the fewest) / (the difference in hubs): what one more hub costs the database.
    """
    if not rounds:
        return {}
    first, last = rounds[0], rounds[-1]
    result: dict[str, Any] = {
        f"hubs{r['hubs']}_{key}": r[key] for r in rounds for key in ROUND_KEYS if key in r
    }
    span = last["hubs"] - first["hubs"]
    result.update(
        hub_counts=[r["hubs"] for r in rounds],
        most_hubs=last["hubs"],
        db_per_hub_ratio=_ratio(last["db_us_per_event_per_hub"], first["db_us_per_event_per_hub"]),
        db_us_per_added_hub=(
            (last["db_us_per_event"] - first["db_us_per_event"]) / span if span else None
        ),
        relay_reads_per_event_per_hub=last["relay_reads_per_event"] / last["hubs"],
        hub_per_hub_ratio=_ratio(
            last["hub_us_per_event_per_hub"], first["hub_us_per_event_per_hub"]
        ),
        latency_p99_ms=last["latency_p99_ms"],
        client_cpu_util=max(r["client_cpu_util"] for r in rounds),
    )
    return result


def _run_client(
    servers: Sequence[Server], db_pid: int | None, params: dict[str, Any]
) -> dict[str, Any]:
    """One load client process against ``servers``; its raw counts (``bench.hosts_client``)."""
    timeout_s = params["connect_timeout_s"] + params["warmup_s"] + params["measure_s"] + 5.0
    job = {
        "scenario": "hosts",
        "dialect": "hub",
        "host": "127.0.0.1",
        "port": servers[0].port,
        "server_pid": servers[0].pid,
        "db_pid": db_pid,
        "params": {
            **params,
            "hubs": [{"port": server.port, "pid": server.pid} for server in servers],
            "timeout_s": timeout_s,
        },
    }
    return run_client_job(job, timeout_s + CLIENT_MARGIN_S)


def _line(figures: dict[str, Any]) -> str:
    added = figures["db_us_per_added_hub"]
    return (
        f"    {figures['hubs']} hub(s): {figures['events_per_s']:.0f} events/s, PostgreSQL "
        f"{figures['db_us_per_event']:.0f} µs/event"
        + (f" ({added:.0f} per added hub)" if added is not None else "")
        + f", {figures['relay_reads_per_event']:.2f} relay reads/event, hub "
        f"{figures['hub_us_per_event_per_hub']:.0f} µs/event/hub, p99 "
        f"{figures['latency_p99_ms']:.1f} ms"
    )


def measure(
    target: HubTarget,
    servers: list[Server],
    db_pid: int | None,
    params: dict[str, Any],
    run_dir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Run every hub count against ``servers`` (the first already running), adding hubs to it.

    A count that fails ends the scenario; the counts measured before it are kept.
    """
    rounds: list[dict[str, Any]] = []
    errors: list[str] = []
    for count in sorted(params["hub_counts"]):
        try:
            while len(servers) < count:
                servers.append(target.start(run_dir))
            raw = _run_client(servers[:count], db_pid, params)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{count} hubs: {str(exc)[-500:]}")
            break
        figures = count_figures(raw, rounds[-1] if rounds else None)
        rounds.append({**figures, "raw": raw})
        errors += [f"{count} hubs: {error}" for error in raw.get("errors", [])[:5]]
        say(_line(figures))
    if not rounds:
        raise RuntimeError("; ".join(errors) or "no hub count measured")
    return {**combine(rounds), "rounds": rounds, "errors": errors[:20]}
