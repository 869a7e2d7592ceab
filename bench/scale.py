"""The scale scenario's coordinator: several load client processes, the server measured between.

``run.py`` calls ``measure`` for a scenario whose client is ``scale``. It
starts ``clients`` processes of the ordinary load client (``python -m
bench.client``, scenario ``scale``, played by ``bench.swarm``), each with its
share of the streams and loopback source addresses of its own, and moves them
through the phases together: every process starts a phase when the
coordinator says so (the shared barrier) and answers when it is done. Between
answers the coordinator reads the server's whole process tree (supervisor and
workers, or nginx's master and workers): CPU from the scheduler's nanosecond
counts (``procs.tree_run_s``), resident memory summed over the tree.

1. Open: a few warm streams per process, then the baseline memory; every
   process opens its share; streams opened per second and server CPU per
   stream opened; after settling, RSS growth per stream.
2. Idle: server CPU over one heartbeat period (15 s on every target) with
   nothing published, in ms per second.
3. Fan-out: ``fanout_events`` single events, ``fanout_gap_s`` apart, each
   through the target's publish endpoint: time from just before the POST
   until the last stream of every process has it (one machine, one
   ``time.time_ns`` clock), and server CPU over that interval; medians.
4. Reconnect storm (targets in ``storm_targets``): the processes read every
   frame and reconnect as an EventSource does; one of them publishes
   ``storm_rate`` events/s; the hub is stopped (SIGTERM) and a new one started
   on the same port. Reported: time until every stream is back and until
   every stream has caught up, events missed and duplicated (each stream's
   ids against the database's ids for the topic), and PostgreSQL's CPU
   (its process tree, reaped backends included) over the storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import procs, tally
from bench.client import EVENT_PAD_BYTES, HttpConnection, Publisher
from bench.dialects import DIALECTS
from bench.targets import HubTarget, Server, Target, die_with_parent
from bench.wire import event_data

ROOT = Path(__file__).resolve().parent.parent
ANSWER_LIMIT_BYTES = 64 * 1024 * 1024
START_TIMEOUT_S = 60.0
PHASE_MARGIN_S = 30.0  # beyond a phase's own deadline, before its client counts as stuck
CLOSE_TIMEOUT_S = 30.0
VERIFY_WAIT_S = 15.0
PUBLISH_DRAIN_S = 1.0
LOG_KEPT_CHARS = 1500  # of a hub that had to be killed, in the results


class ClientFailed(RuntimeError):
    """A client process ended, or did not answer in time."""


@dataclass
class Client:
    """One client process and the pipe pair it is driven through."""

    index: int
    sources: list[str]
    share: int
    process: asyncio.subprocess.Process

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def answer(self, verb: str, timeout_s: float) -> dict[str, Any]:
        """The next answer, which must be to ``verb``."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                line = await self.process.stdout.readline()
        except TimeoutError:
            late = f"client {self.index} did not answer {verb} in {timeout_s:.0f}s"
            raise ClientFailed(late) from None
        if not line:
            code = await self.process.wait()
            raise ClientFailed(f"client {self.index} exited with {code} during {verb}")
        message: dict[str, Any] = json.loads(line)
        if message.get("done") != verb:
            raise ClientFailed(f"client {self.index} answered {message.get('done')} to {verb}")
        return message

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class Coordinator:
    def __init__(
        self,
        target: Target,
        servers: list[Server],
        db_pid: int | None,
        dsn: str | None,
        params: dict[str, Any],
        run_dir: Path,
        say: Callable[[str], None],
    ) -> None:
        self.target = target
        self.servers = servers  # the current server last; the caller stops every one
        self.db_pid = db_pid
        self.dsn = dsn
        self.params = params
        self.run_dir = run_dir
        self.say = say
        self.clients: list[Client] = []
        self.topic = f"{params['topic_prefix']}-scale"
        self.dialect = DIALECTS[target.dialect]

    @property
    def server(self) -> Server:
        return self.servers[-1]

    # ---- the server, measured from outside

    def _tree(self) -> list[int]:
        return procs.descendants(self.server.pid)

    def _cpu_s(self) -> float:
        return procs.tree_run_s(self._tree())

    def _db_cpu_s(self) -> float:
        """PostgreSQL's CPU (clock ticks, its exited backends included), for the hub only."""
        return procs.tree_cpu(self.db_pid).cpu_s if self.db_pid and self.dsn else 0.0

    def _rss_kib(self) -> int:
        rss, _ = procs.tree_memory_kib(self._tree())
        return rss

    # ---- the client processes

    async def _start_clients(self) -> None:
        p = self.params
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        for index, share in enumerate(tally.shares(p["streams"], p["clients"])):
            sources = tally.source_addresses(index)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.client",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                limit=ANSWER_LIMIT_BYTES,
                preexec_fn=die_with_parent,
            )
            client = Client(index, sources, share, process)
            self.clients.append(client)
            job = {
                "scenario": "scale",
                "dialect": self.target.dialect,
                "host": "127.0.0.1",
                "port": self.server.port,
                "server_pid": self.server.pid,
                "db_pid": None,
                "params": {
                    "streams": share,
                    "sources": sources,
                    "topic": self.topic,
                    "timeout_s": p["timeout_s"],
                },
            }
            await client.send(job)
        for client in self.clients:
            await client.answer("ready", START_TIMEOUT_S)

    async def _all(
        self, command: dict[str, Any], timeout_s: float, *, verb: str | None = None
    ) -> list[dict[str, Any]]:
        """Send ``command`` to every process, then wait for every answer."""
        for client in self.clients:
            await client.send(command)
        return await self._answers(verb or command["do"], timeout_s)

    async def _answers(self, verb: str, timeout_s: float) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(client.answer(verb, timeout_s) for client in self.clients))
        )

    async def _close_clients(self) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = []
        for client in self.clients:
            with contextlib.suppress(ConnectionError):
                await client.send({"do": "close"})
        for client in self.clients:
            assert client.process.stdout is not None
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    line = await client.process.stdout.readline()
                    await client.process.wait()
                if line:
                    summaries.append(json.loads(line))
            except TimeoutError:
                client.kill()
        return summaries

    # ---- the phases

    async def run(self) -> dict[str, Any]:
        p = self.params
        result: dict[str, Any] = {"streams": p["streams"], "clients": p["clients"]}
        try:
            await self._start_clients()
            result.update(await self._open())
            result.update(await self._idle())
            result.update(await self._fanout())
            if self.target.name in p["storm_targets"] and isinstance(self.target, HubTarget):
                result.update(await self._storm())
            summaries = await self._close_clients()
        finally:
            for client in self.clients:
                client.kill()
            for client in self.clients:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await client.process.wait()
        result["streams_lost"] = sum(summary.get("lost", 0) for summary in summaries)
        errors = [error for summary in summaries for error in summary.get("errors", [])]
        result["errors"] = (result.get("errors", []) + errors)[:20]
        return result

    async def _open(self) -> dict[str, Any]:
        p = self.params
        timeout_s = p["connect_timeout_s"]
        await self._all({"do": "warm", "count": p["warm_streams"]}, START_TIMEOUT_S)
        await asyncio.sleep(p["settle_s"])
        rss0 = self._rss_kib()
        db_cpu0 = self._db_cpu_s()
        cpu0 = self._cpu_s()
        command = {"do": "open", "timeout_s": timeout_s}
        answers = await self._all(command, timeout_s + PHASE_MARGIN_S)
        cpu1 = self._cpu_s()
        db_cpu1 = self._db_cpu_s()
        opened = tally.combine(
            answers,
            sums=("opened", "failed", "client_cpu_s"),
            maxima=("ended_ns",),
            minima=("started_ns",),
            lists=("errors",),
        )
        open_s = tally.seconds_between(opened["started_ns"], opened["ended_ns"]) or float("nan")
        self.say(f"    {opened['opened']:,} streams open in {open_s:.1f}s")
        await asyncio.sleep(p["settle_s"])
        rss1 = self._rss_kib()
        counted = tally.combine(await self._all({"do": "count"}, PHASE_MARGIN_S), sums=("open",))
        connected = int(counted["open"])
        return {
            "streams_connected": connected,
            "streams_failed": opened["failed"],
            "open_s": open_s,
            "streams_per_s": opened["opened"] / open_s,
            "open_server_cpu_s": cpu1 - cpu0,
            "server_us_per_stream_open": (cpu1 - cpu0) / max(opened["opened"], 1) * 1e6,
            "open_client_cpu_s": opened["client_cpu_s"],
            "db_us_per_stream_open": (
                (db_cpu1 - db_cpu0) / max(opened["opened"], 1) * 1e6 if self.dsn else None
            ),
            "baseline_rss_kib": rss0,
            "rss_kib": rss1,
            "rss_per_stream_kib": (rss1 - rss0) / max(connected, 1),
            "errors": opened["errors"],
        }

    async def _idle(self) -> dict[str, Any]:
        window_s = self.params["idle_window_s"]
        cpu0 = self._cpu_s()
        started = time.monotonic()
        await asyncio.sleep(window_s)  # the measurement: time passing, nothing sent
        cpu1 = self._cpu_s()
        wall_s = time.monotonic() - started
        return {"idle_ms_per_s": (cpu1 - cpu0) / wall_s * 1000, "idle_window_s": wall_s}

    async def _fanout(self) -> dict[str, Any]:
        p = self.params
        timeout_s = p["fanout_timeout_s"]
        publisher = Publisher("127.0.0.1", self.server.port, self.dialect)
        rounds: list[dict[str, Any]] = []
        try:
            for number in range(1, p["fanout_events"] + 1):
                command = {"do": "expect", "events": number, "timeout_s": timeout_s}
                await self._all(command, PHASE_MARGIN_S, verb="armed")
                if publisher.connection is None or publisher.connection.closed:
                    publisher.connection = await HttpConnection.open("127.0.0.1", self.server.port)
                cpu0 = self._cpu_s()
                sent_ns = time.time_ns()
                data = event_data(sent_ns, number, EVENT_PAD_BYTES)
                if not await publisher.send([(self.topic, data)]):
                    raise RuntimeError(f"fan-out publish failed: {publisher.errors[-1:]}")
                answers = await self._answers("expect", timeout_s + PHASE_MARGIN_S)
                cpu1 = self._cpu_s()
                reached = tally.combine(
                    answers, sums=("at_goal", "open", "client_cpu_s"), maxima=("reached_ns",)
                )
                complete = all(answer["reached_ns"] is not None for answer in answers)
                last_s = tally.seconds_between(sent_ns, reached["reached_ns"])
                rounds.append(
                    {
                        "last_ms": last_s * 1000 if complete and last_s is not None else None,
                        "server_cpu_ms": (cpu1 - cpu0) * 1000,
                        "reached": reached["at_goal"],
                        "open": reached["open"],
                        "client_cpu_s": reached["client_cpu_s"],
                    }
                )
                await asyncio.sleep(p["fanout_gap_s"])
        finally:
            publisher.close()
        times = [r["last_ms"] for r in rounds if r["last_ms"] is not None]
        self.say(f"    fan-out to all: {', '.join(f'{t:.0f}' for t in times)} ms")
        return {
            "fanout_last_ms": statistics.median(times) if times else None,
            "fanout_cpu_ms": statistics.median(r["server_cpu_ms"] for r in rounds),
            "fanout_incomplete": len(rounds) - len(times),
            "fanout_rounds": rounds,
        }

    async def _storm(self) -> dict[str, Any]:
        p = self.params
        assert isinstance(self.target, HubTarget)
        assert self.dsn is not None
        head0 = await _database_head(self.dsn)
        timeout_s = p["storm_timeout_s"]
        reconnect_s = p["storm_lead_s"] + timeout_s + PHASE_MARGIN_S
        await self._all({"do": "track", "timeout_s": reconnect_s}, PHASE_MARGIN_S)
        publisher = self.clients[0]
        await publisher.send({"do": "publish", "rate": p["storm_rate"]})
        await publisher.answer("publish", PHASE_MARGIN_S)
        await asyncio.sleep(p["storm_lead_s"])
        db_cpu0 = self._db_cpu_s()
        dropped_ns = time.time_ns()
        for client in self.clients:
            await client.send({"do": "storm", "dropped_ns": dropped_ns, "timeout_s": timeout_s})
        old = self.server
        await asyncio.to_thread(old.stop)
        stopped_ns = time.time_ns()
        old_exit = old.process.returncode  # -9: it did not stop in time and was killed
        old_log = old.log_tail()[-LOG_KEPT_CHARS:] if old_exit else None
        new = self.target.spawn(self.run_dir, old.port)  # here: see HubTarget.spawn
        self.servers.append(new)
        await asyncio.to_thread(self.target.wait_ready, new)
        ready_ns = time.time_ns()
        answers = await self._answers("storm", timeout_s + PHASE_MARGIN_S)
        db_cpu1 = self._db_cpu_s()
        server_cpu = procs.tree_cpu(new.pid).cpu_s  # all of the new hub's life so far
        storm = tally.combine(
            answers,
            sums=("streams", "back", "live", "attempts", "refused", "redrops", "client_cpu_s"),
            maxima=("last_back_ns", "last_live_ns"),
        )
        await asyncio.sleep(p["storm_tail_s"])
        await publisher.send({"do": "stop-publish"})
        published = await publisher.answer("stop-publish", PHASE_MARGIN_S)
        await asyncio.sleep(PUBLISH_DRAIN_S)
        ids = await _topic_ids(self.dsn, self.topic, head0)
        command = {
            "do": "verify",
            "ids": ids,
            "accepted": published["accepted"],
            "timeout_s": VERIFY_WAIT_S,
        }
        verified = tally.combine(
            await self._all(command, VERIFY_WAIT_S + PHASE_MARGIN_S),
            sums=(
                "missed",
                "duplicates",
                "unexpected",
                "streams_with_gaps",
                "not_back",
                "not_caught_up",
            ),
            maxima=("last_caught_up_ns",),
        )
        storm["statuses"] = tally.add_counts(answer.get("statuses", {}) for answer in answers)
        storm["failed_attempts"] = tally.add_counts(
            answer.get("failed_attempts", {}) for answer in answers
        )
        back_s = tally.seconds_between(dropped_ns, storm["last_back_ns"])
        caught_s = tally.seconds_between(dropped_ns, verified["last_caught_up_ns"])
        complete = storm["live"] >= storm["streams"] and not verified["not_caught_up"]
        self.say(
            f"    storm: {storm['back']:,}/{storm['streams']:,} back in {back_s or 0:.1f}s, "
            f"caught up in {caught_s or 0:.1f}s; {len(ids)} events published, "
            f"{verified['missed']} missed, {verified['duplicates']} duplicates"
        )
        return {
            "storm_streams": storm["streams"],
            "storm_back": storm["back"],
            "storm_back_s": back_s if storm["back"] >= storm["streams"] else None,
            "storm_caught_up_s": caught_s if complete else None,
            "storm_missed": verified["missed"],
            "storm_duplicates": verified["duplicates"],
            "storm_unexpected": verified["unexpected"],
            "storm_streams_with_gaps": verified["streams_with_gaps"],
            "storm_not_caught_up": verified["not_caught_up"] + verified["not_back"],
            "storm_db_cpu_s": db_cpu1 - db_cpu0,
            "storm_server_cpu_s": server_cpu,
            "storm_stop_s": (stopped_ns - dropped_ns) / 1e9,
            "storm_old_hub_exit": old_exit,
            "storm_old_hub_log": old_log,
            "storm_restart_s": (ready_ns - dropped_ns) / 1e9,  # SIGTERM to every worker listening
            "storm_attempts": storm["attempts"],
            "storm_refused": storm["refused"],
            "storm_redrops": storm["redrops"],
            "storm_statuses": storm["statuses"],
            "storm_failed_attempts": storm["failed_attempts"],
            "storm_published": len(ids),
            "storm_publish_failures": published["failures"],
            "storm_client_cpu_s": storm["client_cpu_s"],
        }


async def _database_head(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM sse_hub.events"))
    finally:
        await conn.close()


async def _topic_ids(dsn: str, topic: str, after: int) -> list[int]:
    """The truth: every id the database holds for ``topic`` above ``after``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id FROM sse_hub.events WHERE topic = $1 AND id > $2 ORDER BY id", topic, after
        )
    finally:
        await conn.close()
    return [int(row["id"]) for row in rows]


def measure(
    target: Target,
    servers: list[Server],
    db_pid: int | None,
    dsn: str | None,
    params: dict[str, Any],
    run_dir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Run the scale scenario against the running ``servers[-1]``; a restart appends to it."""
    coordinator = Coordinator(target, servers, db_pid, dsn, params, run_dir, say)
    try:
        return asyncio.run(coordinator.run())
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise RuntimeError(f"reading the published ids: {exc}") from exc
