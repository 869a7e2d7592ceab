"""Floors under two of issue 6's targets, measured on this machine with nothing of the hub.

    python -m bench.floors publish          # aiohttp's own cost per POST, same client as make bench
    python -m bench.floors commit [--dsn]   # PostgreSQL's commit latency at 1,000 commits/s

``publish`` runs ``bench/peers/aiohttp_floor.py`` (parse the JSON, answer 201:
no database) under the bench's publish scenario, 50 keep-alive publishers, one
event per request: the events/s one aiohttp process can answer at all.
``commit`` times one-row ``INSERT`` transactions, open loop at 1,000/s, on a
durable embedded PostgreSQL (fsync on, as ``make bench`` runs the hub's): the
part of publish→receive latency that no hub built on PostgreSQL can avoid.
Both print figures; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.jobs import run_client_job
from bench.targets import READY_TIMEOUT_S, die_with_parent, healthy
from sse_hub.embedded_pg import EmbeddedPostgres, free_port

ROOT = Path(__file__).resolve().parent.parent
PUBLISH_PARAMS = {"publishers": 50, "batch": 1, "warmup_s": 1.0, "measure_s": 8.0}
COMMITS_PER_S = 1000
CLIENT_TIMEOUT_S = 120.0
COMMIT_SECONDS = 10.0


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def publish_floor_runs(repeats: int) -> list[dict[str, Any]]:
    """``repeats`` runs of the bench's publish client against the aiohttp floor app."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "peers" / "aiohttp_floor.py"), str(port)],
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not healthy(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the aiohttp floor app did not start")
            time.sleep(0.05)
        results: list[dict[str, Any]] = []
        for _ in range(repeats):
            spec = {
                "scenario": "publish",
                "dialect": "hub",
                "host": "127.0.0.1",
                "port": port,
                "server_pid": server.pid,
                "db_pid": None,
                "params": {**PUBLISH_PARAMS, "topic_prefix": "floor", "timeout_s": 60},
            }
            results.append(run_client_job(spec, CLIENT_TIMEOUT_S))
        return results
    finally:
        server.terminate()
        server.wait(timeout=15)


def publish_floor(repeats: int) -> None:
    rates, costs = [], []
    for result in publish_floor_runs(repeats):
        rates.append(result["accepted_per_s"])
        costs.append(result["server_us_per_event"])
        print(
            f"  aiohttp floor: {result['accepted_per_s']:,.0f} POSTs/s, "
            f"{result['server_us_per_event']:.1f} µs of server CPU each"
        )
    print(
        f"aiohttp floor, median of {repeats}: {statistics.median(rates):,.0f} POSTs/s, "
        f"{statistics.median(costs):.1f} µs per POST"
    )


async def _commit_latencies_ms(dsn: str) -> list[float]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS floor_probe (id bigserial PRIMARY KEY, v text)"
        )
        latencies: list[float] = []
        period_s = 1 / COMMITS_PER_S
        start = time.perf_counter()
        for index in range(int(COMMITS_PER_S * COMMIT_SECONDS)):
            delay_s = start + index * period_s - time.perf_counter()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            sent = time.perf_counter()
            await conn.execute("INSERT INTO floor_probe (v) VALUES ('x')")
            latencies.append((time.perf_counter() - sent) * 1000)
        await conn.execute("DROP TABLE floor_probe")
        return latencies
    finally:
        await conn.close()


def commit_floor(dsn: str | None) -> None:
    database = None
    if dsn is None:
        folder = Path(tempfile.mkdtemp(prefix="sse-hub-bench-floor-pg-"))
        os.chmod(folder, 0o755)
        database = EmbeddedPostgres(folder, durable=True)
        dsn = asyncio.run(database.start())
    try:
        latencies = asyncio.run(_commit_latencies_ms(dsn))
    finally:
        if database is not None:
            asyncio.run(database.remove())
    print(
        f"PostgreSQL commit latency at {COMMITS_PER_S:,}/s ({len(latencies):,} commits): "
        f"p50 {_quantile(latencies, 0.5):.2f} ms, p99 {_quantile(latencies, 0.99):.2f} ms, "
        f"p99.9 {_quantile(latencies, 0.999):.2f} ms, max {max(latencies):.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    parser.add_argument("what", choices=["publish", "commit"])
    parser.add_argument("--repeat", type=int, default=3, help="publish runs (default 3)")
    parser.add_argument("--dsn", help="commit: this PostgreSQL instead of an embedded one")
    args = parser.parse_args(argv)
    if args.what == "publish":
        publish_floor(max(1, args.repeat))
    else:
        commit_floor(args.dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
