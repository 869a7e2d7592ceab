"""The servers under test, started and stopped by the bench: the hub, nchan and sse-starlette.

Each runs as its own process on a free loopback port, in a session of its own,
with a parent-death signal so that it never outlives the bench (even one killed
with SIGKILL), and is stopped with SIGTERM, then SIGKILL, when its run ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from sse_hub.embedded_pg import free_port

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
NCHAN_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_nchan_module.so",
    "/usr/share/nginx/modules/ngx_nchan_module.so",
)
NCHAN_TEMPLATE = Path(__file__).parent / "peers" / "nchan.conf"
MAX_STREAMS_PER_PROCESS = 50_000
NGINX_MAX_OPEN_FILES = 65_536
NGINX_MAX_CONNECTIONS = 30_000
# Files a server process keeps besides its streams: listening socket, logs, database
# connections, the connections being accepted while the stream limit is checked.
FILES_BESIDES_STREAMS = 2_000
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def nchan_module() -> Path | None:
    for candidate in NCHAN_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if Path(path).is_file()), None
    )


def hub_serves_files() -> bool:
    """Downloads (``GET /files/...``) arrived with ``sse_hub.downloads``."""
    return importlib.util.find_spec("sse_hub.downloads") is not None


def open_files_limit() -> int:
    """The hard limit on open files: what any process started here can raise itself to."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def streams_per_process() -> int:
    """Streams one server process may promise: never more than it can have open files.

    A hub worker asked for more streams than its file limit fails ``accept`` with
    ``EMFILE`` instead of answering 503 with ``Retry-After``.
    """
    return max(1_000, min(MAX_STREAMS_PER_PROCESS, open_files_limit() - FILES_BESIDES_STREAMS))


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    """One running target process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        process = self.process
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def _spawn(
    name: str, command: Sequence[str], port: int, run_dir: Path, env: dict[str, str] | None = None
) -> Server:
    log_path = run_dir / f"{name}-{port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches the bench, which stops everything in order
            preexec_fn=die_with_parent,
            env=env,
        )
    return Server(name, port, process, log_path)


def _all_listening(port: int, workers: int, probe: Callable[[], bool]) -> Callable[[], bool]:
    """Ready when ``probe`` passes and, with several workers, each has its socket."""
    if workers <= 1:
        return probe
    return lambda: procs.listeners(port) >= workers and probe()


def _wait_ready(server: Server, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        if probe():
            return
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(
        f"{server.name} was not ready in {READY_TIMEOUT_S:.0f}s:\n{server.log_tail()}"
    )


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass
class HubTarget:
    """``python -m sse_hub serve`` against the bench's PostgreSQL."""

    dsn: str
    files_dir: Path | None
    workers: int = 1
    name: str = "hub"
    dialect: str = "hub"
    wrapper: list[str] = field(default_factory=list)  # e.g. the tracemalloc launcher
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  # e.g. --file-chunk 1048576

    def start(self, run_dir: Path, port: int | None = None) -> Server:
        """Start on a free port, or on ``port`` (a restart in place of a stopped hub)."""
        server = self.spawn(run_dir, port)
        self.wait_ready(server)
        return server

    def wait_ready(self, server: Server) -> None:
        _wait_ready(server, _all_listening(server.port, self.workers, lambda: healthy(server.port)))

    def spawn(self, run_dir: Path, port: int | None = None) -> Server:
        """Start the process without waiting for it to serve.

        Call it from the thread that lives as long as the bench: the hub's
        parent-death signal comes when the thread that started it ends.
        """
        port = port or free_port()
        command = [sys.executable, *(self.wrapper or ["-m", "sse_hub"]), "serve"]
        command += ["--port", str(port), "--dsn", self.dsn, "--workers", str(self.workers)]
        command += ["--shutdown-timeout", "5", "--max-streams", str(streams_per_process())]
        command += ["--no-access-log"]  # as the peers: nginx `access_log off`, uvicorn's own flag
        if self.files_dir is not None and hub_serves_files():
            command += ["--files-dir", str(self.files_dir)]
        command += self.extra_args
        return _spawn(self.name, command, port, run_dir, env={**os.environ, **self.env})


@dataclass
class NchanTarget:
    """nginx with the nchan module, ``workers`` worker processes, config in the run directory.

    With several workers each listens on its own ``SO_REUSEPORT`` socket, as the
    hub's workers do, so the kernel spreads connections evenly; on one shared
    socket the first worker to wake takes most of a burst.
    """

    files_dir: Path
    workers: int = 1
    name: str = "nchan"
    dialect: str = "nchan"

    def start(self, run_dir: Path, port: int | None = None) -> Server:
        module = nchan_module()
        binary = nginx_binary()
        if module is None or binary is None:
            raise RuntimeError("nginx or the nchan module is missing: run bench/setup.sh")
        port = port or free_port()
        prefix = run_dir / f"nginx-{port}"
        prefix.mkdir(parents=True, exist_ok=True)
        rlimit = min(NGINX_MAX_OPEN_FILES, open_files_limit())
        config = NCHAN_TEMPLATE.read_text().format(
            module=module,
            prefix=prefix,
            port=port,
            files_dir=self.files_dir,
            workers=self.workers,
            rlimit=rlimit,
            connections=min(NGINX_MAX_CONNECTIONS, rlimit),
            listen_options=" reuseport" if self.workers > 1 else "",
        )
        conf_path = prefix / "nginx.conf"
        conf_path.write_text(config)
        server = _spawn(self.name, [binary, "-p", str(prefix), "-c", str(conf_path)], port, run_dir)
        _wait_ready(server, _all_listening(port, self.workers, lambda: _port_open(port)))
        return server


@dataclass
class StarletteTarget:
    """The sse-starlette broadcast app on uvicorn (uvloop, httptools), one process."""

    name: str = "starlette"
    dialect: str = "starlette"

    def start(self, run_dir: Path) -> Server:
        port = free_port()
        command = [
            sys.executable, "-m", "uvicorn", "bench.peers.starlette_app:app",
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "2",
            "--backlog", "4096",
        ]  # fmt: skip
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        server = _spawn(self.name, command, port, run_dir, env=env)
        _wait_ready(server, lambda: _port_open(port))
        return server


Target = HubTarget | NchanTarget | StarletteTarget
