"""``make bench``: the hub against nchan and sse-starlette, same client, same machine, same run.

For each scenario and each repeat, every target is started fresh, measured by
the load client (``bench.client``, its own process) and stopped; the order of
targets rotates between repeats so that no target always runs first (or last)
on a noisy machine. The report gives medians with (min–max), the hub/peer
ratios, and the issue's targets; JSON and markdown go to ``bench-results/``, and
a run of every scenario against every target also rewrites the committed
``docs/benchmarks/latest.md`` (figures, targets, commit, date, machine).
Then, unless ``--no-profile``, py-spy records the hub under fan-out and idle,
and tracemalloc shows where an idle stream's memory goes. The scale scenarios
run several client processes through ``bench.scale`` instead of one client; the
hosts scenario runs several hubs on one database through ``bench.hosts``.

    python -m bench.run                  # everything (about 24 minutes)
    python -m bench.run --quick          # smaller and shorter (about 6 minutes)
    python -m bench.run -s fanout -s idle --targets hub,nchan --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg

from bench import floors, hosts, profiles, report, scale
from bench.jobs import run_client_job
from bench.plan import SCENARIOS, SCENARIOS_BY_NAME, RunResult, Scenario
from bench.report import FLOOR_TARGET
from bench.targets import (
    HubTarget,
    NchanTarget,
    Server,
    StarletteTarget,
    Target,
    hub_serves_files,
    nchan_module,
    nginx_binary,
)
from sse_hub.embedded_pg import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
CLIENT_MARGIN_S = 120.0
PAUSE_BETWEEN_RUNS_S = 1.0
FILE_BLOCK = 1 << 20
# py-spy records the hub under these (the issue asks for fan-out and idle; publish and
# latency show where a POST's time goes).
PROFILED = ("fanout", "idle", "publish", "latency")
TRACED_STREAMS = 3000
RESULTS_PAGE = ROOT / report.RESULTS_PAGE
ALL_TARGETS = ("hub", "nchan", "starlette")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM: unwind like Ctrl-C, stopping every server on the way out."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Stop("terminated")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def make_file(folder: Path, name: str, size: int) -> Path:
    """A file of ``size`` pseudo-random bytes (one random MiB repeated), reused when present."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.is_file() and path.stat().st_size == size:
        return path
    block = random.randbytes(FILE_BLOCK)
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            piece = block[: min(FILE_BLOCK, size - written)]
            handle.write(piece)
            written += len(piece)
    os.chmod(folder, 0o755)
    os.chmod(path, 0o644)
    return path


def run_client(
    scenario: Scenario, target: Target, server: Server, db_pid: int | None, params: dict[str, Any]
) -> dict[str, Any]:
    spec = {
        "scenario": scenario.client,
        "dialect": target.dialect,
        "host": "127.0.0.1",
        "port": server.port,
        "server_pid": server.pid,
        "db_pid": db_pid if target.dialect == "hub" else None,
        "params": {**params, "timeout_s": scenario.timeout_s},
    }
    return run_client_job(spec, scenario.timeout_s + CLIENT_MARGIN_S)


def _one_line(result: dict[str, Any], scenario: Scenario) -> str:
    parts = []
    for metric in scenario.metrics[:3]:
        value = result.get(metric.key)
        if isinstance(value, int | float):
            parts.append(f"{metric.label} {value * metric.scale:,.2f}")
    if result.get("errors"):
        parts.append(f"errors: {result['errors'][:2]}")
    return "; ".join(parts)


def database_facts(dsn: str) -> dict[str, Any]:
    """How big the hub's table is after a run (replay pages cost depends on it and its stats)."""

    async def read() -> dict[str, Any]:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM sse_hub.events) AS rows, last_autoanalyze, "
                "last_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = 'sse_hub' AND relname = 'events'"
            )
        finally:
            await conn.close()
        if row is None:
            return {}
        analysed = row["last_autoanalyze"] or row["last_analyze"]
        return {
            "db_events_rows": row["rows"],
            "db_events_last_analyze": str(analysed) if analysed else None,
        }

    try:
        return asyncio.run(read())
    except (OSError, asyncpg.PostgresError):
        return {}


def server_version(dsn: str) -> str | None:
    """PostgreSQL's version, for the record of the run."""

    async def read() -> str | None:
        conn = await asyncpg.connect(dsn)
        try:
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return str(version).split()[0] if version else None

    try:
        return asyncio.run(read())
    except (OSError, asyncpg.PostgresError):
        return None


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.quick: bool = args.quick
        self.results: list[RunResult] = []
        self.db: EmbeddedPostgres | None = None
        self.dsn: str | None = args.dsn
        self.files_dir = work / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.files_dir, 0o755)
        self.targets: dict[str, Target] = {}
        self.pg_version: str | None = None

    # ---- set-up

    def start_database(self) -> None:
        if self.dsn:
            say(f"PostgreSQL: {self.dsn} (given)")
        else:
            if self.args.pg == "fast":
                self.db = EmbeddedPostgres.throwaway()
            else:
                folder = Path(tempfile.mkdtemp(prefix="sse-hub-bench-pg-"))
                os.chmod(folder, 0o755)
                self.db = EmbeddedPostgres(folder, durable=True)
            self.dsn = asyncio.run(self.db.start())
            say(f"PostgreSQL: embedded, {self.args.pg} ({self.db.data_dir}), pid {self.db.pid}")
        self.pg_version = server_version(self.dsn)

    def build_targets(self, names: list[str]) -> None:
        for name in names:
            if name == "hub":
                assert self.dsn is not None
                self.targets[name] = HubTarget(
                    self.dsn,
                    self.files_dir,
                    workers=self.args.hub_workers,
                    extra_args=[arg for text in self.args.hub_arg for arg in text.split()],
                )
            elif name == "nchan":
                if nchan_module() is None or nginx_binary() is None:
                    say("nchan: nginx or its nchan module is missing (run bench/setup.sh); skipped")
                    continue
                self.targets[name] = NchanTarget(self.files_dir)
            elif name == "starlette":
                self.targets[name] = StarletteTarget()

    # ---- measured runs

    def applicable(self, scenario: Scenario) -> list[str]:
        names = [name for name in self.targets if name in scenario.targets]
        if scenario.name == "file" and "hub" in names and not hub_serves_files():
            say("file: this hub has no /files downloads yet (sse_hub.downloads); nginx only")
            names.remove("hub")
        return names

    def run_scenario(self, scenario: Scenario, repeats: int) -> None:
        params = scenario.params_for(quick=self.quick)
        names = self.applicable(scenario)
        if scenario.name == "file":
            size = int(params["size"])
            say(f"file: writing a {size / 2**30:.2f} GiB file")
            make_file(self.files_dir, Path(params["path"]).name, size)
        if scenario.max_repeats is not None:
            repeats = min(repeats, scenario.max_repeats)
        say(f"\n== {scenario.title} ({', '.join(names)}; {repeats} repeat(s))")
        for repeat in range(repeats):
            shift = repeat % max(1, len(names))
            order = names[shift:] + names[:shift]
            for name in order:
                self.results.append(self.measure(scenario, name, repeat, params))
                time.sleep(PAUSE_BETWEEN_RUNS_S)
        if scenario.name == "publish" and "hub" in names:
            self.measure_publish_floor(repeats)

    def measure_publish_floor(self, repeats: int) -> None:
        """aiohttp's own cost per POST, for the single-event publish target to refer to."""
        try:
            floor_runs = floors.publish_floor_runs(repeats)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
            say(f"  {FLOOR_TARGET}: FAILED: {exc}")
            return
        for repeat, result in enumerate(floor_runs):
            self.results.append(RunResult("publish", FLOOR_TARGET, repeat, result))
            say(f"  {FLOOR_TARGET} #{repeat + 1}: {result['server_us_per_event']:.1f} µs per POST")

    def measure(
        self, scenario: Scenario, name: str, repeat: int, params: dict[str, Any]
    ) -> RunResult:
        target = self.targets[name]
        if "workers" in params and isinstance(target, HubTarget | NchanTarget):
            target = dataclasses.replace(target, workers=int(params["workers"]))
        run = RunResult(scenario.name, name, repeat)
        prefix = f"bench-{scenario.name}-r{repeat}-{random.randrange(1 << 30):x}"
        servers: list[Server] = []  # one, or two when the scenario restarts the server
        server: Server | None = None
        try:
            server = target.start(self.work)
            servers.append(server)
            db_pid = self.db.pid if self.db is not None else None
            params = {**params, "topic_prefix": prefix}
            if scenario.client == "scale":
                params["timeout_s"] = scenario.timeout_s
                run.result = scale.measure(
                    target, servers, db_pid, self.dsn if name == "hub" else None, params,
                    self.work, say,
                )  # fmt: skip
                server = servers[-1]
            elif scenario.client == "hosts":
                assert isinstance(target, HubTarget)
                run.result = hosts.measure(target, servers, db_pid, params, self.work, say)
            else:
                run.result = run_client(scenario, target, server, db_pid, params)
            if name == "hub" and self.dsn is not None:
                run.result.update(database_facts(self.dsn))
            say(f"  {name:9s} #{repeat + 1}: {_one_line(run.result, scenario)}")
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as exc:
            run.error = str(exc)[-2000:]
            say(f"  {name:9s} #{repeat + 1}: FAILED: {run.error}")
            if servers:
                say(servers[-1].log_tail())
        finally:
            for started in servers:
                started.stop()
        return run

    # ---- profiles

    def profile(self, out: Path) -> str:
        """py-spy under ``PROFILED`` scenarios, tracemalloc under idle; returns markdown."""
        if "hub" not in self.targets or profiles.py_spy() is None:
            return "(profiles skipped: no hub target or no py-spy)"
        sections: list[str] = []
        hub = self.targets["hub"]
        assert isinstance(hub, HubTarget)
        db_pid = self.db.pid if self.db is not None else None
        for scenario_name in PROFILED:
            scenario = SCENARIOS_BY_NAME[scenario_name]
            params = {
                **scenario.params_for(quick=self.quick),
                "topic_prefix": f"prof-{scenario_name}",
            }
            stacks = out / f"profile-{scenario_name}.collapsed.txt"
            server = hub.start(self.work)
            try:
                if scenario_name != "idle":  # the measured part, after connecting and warming up
                    delay = params["warmup_s"] + 1.5
                    duration = params["measure_s"] - 1.5
                else:
                    delay, duration = params["settle_s"] + 0.5, 8.0
                spy: list[subprocess.Popen[bytes]] = []

                def launch(
                    pid: int = server.pid,
                    seconds: float = duration,
                    path: Path = stacks,
                    started: list[subprocess.Popen[bytes]] = spy,
                ) -> None:
                    started.append(profiles.start_py_spy(pid, seconds, path, out / "py-spy.log"))

                result = self._client_with_side_job(
                    scenario, hub, server, db_pid, params, delay, launch
                )
                for process in spy:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=60)
            finally:
                server.stop()
            table, samples = (
                profiles.summarise_stacks(stacks)
                if stacks.exists()
                else ("(py-spy failed; see py-spy.log)", 0)
            )
            sections.append(
                f"### Hub CPU under {scenario_name} (py-spy, {samples} samples, "
                f"`{stacks.name}`)\n\n{_one_line(result, scenario)}\n\n{table}"
            )
        sections.append(self.memory_profile(out))
        return "\n\n".join(sections)

    def _client_with_side_job(
        self,
        scenario: Scenario,
        target: Target,
        server: Server,
        db_pid: int | None,
        params: dict[str, Any],
        delay_s: float,
        side_job: Callable[[], None],
    ) -> dict[str, Any]:
        """Run the client; after ``delay_s`` start ``side_job`` (the profiler) alongside it."""
        timer = threading.Timer(delay_s, side_job)
        timer.start()
        try:
            return run_client(scenario, target, server, db_pid, params)
        finally:
            timer.cancel()

    def memory_profile(self, out: Path) -> str:
        assert self.dsn is not None
        scenario = SCENARIOS_BY_NAME["idle"]
        # Tracing slows the hub several times over; 3,000 streams give the same per-stream split.
        params = scenario.params_for(quick=self.quick)
        params["streams"] = min(int(params["streams"]), TRACED_STREAMS)
        snapshots = out / "tracemalloc"
        snapshots.mkdir(exist_ok=True)
        for old in snapshots.glob("snapshot-*"):
            old.unlink()
        traced = HubTarget(
            self.dsn,
            None,
            name="hub-traced",
            wrapper=["-m", "bench.hub_traced"],
            env={
                "BENCH_TRACEMALLOC_DIR": str(snapshots),
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            },
        )
        server = traced.start(self.work)
        try:
            params = {**params, "topic_prefix": "prof-mem", "snapshot_dir": str(snapshots)}
            result = run_client(scenario, traced, server, None, params)
        finally:
            server.stop()
        before, after = snapshots / "snapshot-0.pickle", snapshots / "snapshot-1.pickle"
        if not (before.exists() and after.exists()):
            return "(tracemalloc snapshots missing)"
        text = profiles.summarise_memory(before, after, int(params["streams"]))
        (out / "profile-idle-memory.md").write_text(text + "\n")
        rss = result.get("rss_per_stream_kib", float("nan"))
        return (
            f"### Hub memory per idle stream (tracemalloc, {params['streams']} streams; "
            f"RSS with tracing on: {rss:.2f} KiB/stream)\n\n{text}"
        )


def _versions(pg_version: str | None) -> dict[str, str]:
    found: dict[str, str] = {"python": platform.python_version()}
    if pg_version is not None:
        found["postgresql"] = pg_version
    from importlib.metadata import PackageNotFoundError, version

    for package in ("aiohttp", "asyncpg", "sse-starlette", "starlette", "uvicorn", "uvloop"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        nchan = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-nchan"],
            capture_output=True, check=False, text=True,
        )  # fmt: skip
        found["libnginx-mod-nchan"] = nchan.stdout.strip()
        nginx = subprocess.run(["nginx", "-v"], capture_output=True, check=False, text=True)
        found["nginx"] = nginx.stderr.strip().rsplit("/", 1)[-1]
    return found


def _git(*args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, check=True, text=True
    )
    return completed.stdout.strip()


def _commit() -> str:
    """The measured tree's commit, marked when it has uncommitted changes."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} with uncommitted changes" if dirty else head


def _machine() -> str:
    """CPUs, their model, the distribution and the kernel: what the figures depend on."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    system = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip().strip('"')
    return f"{os.cpu_count()} CPUs ({model}), {system}, kernel {platform.release()}"


def complete(args: argparse.Namespace, measured_targets: list[str], interrupted: bool) -> bool:
    """A full run of every scenario against every target: the one the docs record."""
    return (
        not interrupted
        and not args.quick
        and set(args.scenario) == set(SCENARIOS_BY_NAME)
        and set(measured_targets) == set(ALL_TARGETS)
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="smaller counts and shorter runs (also BENCH_QUICK=1)",
    )
    parser.add_argument(
        "-s",
        "--scenario",
        action="append",
        choices=list(SCENARIOS_BY_NAME),
        help="run only this scenario (repeatable; also BENCH_SCENARIOS=a,b)",
    )
    parser.add_argument(
        "--targets",
        default=os.environ.get("BENCH_TARGETS", "hub,nchan,starlette"),
        help="comma-separated subset of hub,nchan,starlette",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per target and scenario (default 3, quick 1; BENCH_REPEAT)",
    )
    parser.add_argument(
        "--pg",
        choices=("durable", "fast"),
        default=os.environ.get("BENCH_PG", "durable"),
        help="embedded PostgreSQL: durable (fsync on, as `sse-hub serve`) or fast "
        "(fsync off, as the tests)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_DSN"),
        help="use this PostgreSQL instead of an embedded one",
    )
    parser.add_argument("--hub-workers", type=int, default=1, help="hub --workers (default 1)")
    parser.add_argument(
        "--hub-arg",
        action="append",
        default=[],
        help="extra flags for sse-hub serve, e.g. --hub-arg='--file-chunk 1048576'",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument(
        "--note",
        default=os.environ.get("BENCH_NOTE"),
        help="a remark kept with the results, e.g. what else ran on the machine (BENCH_NOTE)",
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        default=os.environ.get("BENCH_PROFILE", "1") != "0",
        help="skip the py-spy/tracemalloc pass (also BENCH_PROFILE=0)",
    )
    args = parser.parse_args(argv)
    if args.scenario is None:
        env = os.environ.get("BENCH_SCENARIOS")
        args.scenario = env.split(",") if env else [s.name for s in SCENARIOS]
    if args.repeat is None:
        env_repeat = os.environ.get("BENCH_REPEAT")
        args.repeat = int(env_repeat) if env_repeat else (1 if args.quick else 3)
    return args  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _on_sigterm)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sse-hub-bench-"))
    os.chmod(work, 0o755)
    bench = Bench(args, work)
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    started = time.monotonic()
    profile_md = ""
    interrupted = False
    try:
        names = [name.strip() for name in args.targets.split(",") if name.strip()]
        if "hub" in names:
            bench.start_database()
        bench.build_targets(names)
        for name in args.scenario:
            bench.run_scenario(SCENARIOS_BY_NAME[name], args.repeat)
        if args.profile and "hub" in bench.targets:
            say(f"\n== profiles of the hub (py-spy: {', '.join(PROFILED)}; tracemalloc: idle)")
            profile_md = bench.profile(out)
    except (KeyboardInterrupt, Stop):
        interrupted = True
        say("\ninterrupted: servers stopped; reporting what was measured")
    finally:
        if bench.db is not None:
            asyncio.run(
                bench.db.remove()
            )  # stops the server and deletes its temporary data directory
        shutil.rmtree(work, ignore_errors=True)
    summary, goal_rows, table, goals_md = report.tables(bench.results, repeats=args.repeat)
    elapsed = time.monotonic() - started
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": args.quick,
        "repeats": args.repeat,
        "pg": "given DSN" if args.dsn else args.pg,
        "hub_workers": args.hub_workers,
        "hub_args": args.hub_arg,
        "cpus": os.cpu_count(),
        "commit": _commit(),
        "machine": _machine(),
        "note": args.note,
        "versions": _versions(bench.pg_version),
        "elapsed_s": elapsed,
        "interrupted": interrupted,
        "nginx_workers": 1,
        "scale": {
            name: {
                key: SCENARIOS_BY_NAME[name].params_for(quick=args.quick)[key]
                for key in ("streams", "workers", "clients")
            }
            for name in args.scenario
            if SCENARIOS_BY_NAME[name].client == "scale"
        },
        "hub_serves_files": hub_serves_files(),
    }
    document = {
        "meta": meta,
        "summary": summary,
        "goals": goal_rows,
        "runs": [asdict(run) for run in bench.results],
    }
    text = (
        f"# sse_hub bench {meta['date']}\n\n{report.run_description(meta)}; commit "
        f"{meta['commit']}; {meta['machine']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + (f"; note: {args.note}" if args.note else "")
        + f"\n\n{table}\n\n## Targets\n\n{goals_md}\n"
        + (f"\n## Profiles\n\n{profile_md}\n" if profile_md else "")
    )
    (out / f"bench-{stamp}.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / f"bench-{stamp}.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(text)
    print(text)
    say(f"written: {out / f'bench-{stamp}.json'} and .md")
    if complete(args, list(bench.targets), interrupted):
        RESULTS_PAGE.write_text(report.results_page(meta, table, goals_md))
        say(f"written: {RESULTS_PAGE.relative_to(ROOT)} (commit it with the change it measures)")
    else:
        say(f"not a run of every scenario and target: {RESULTS_PAGE.relative_to(ROOT)} unchanged")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
