"""Running the hub: one process, or a supervisor with ``--workers`` processes on one port.

With several workers the supervisor prepares the database once (embedded
server, migrations), then forks each worker, which serves bound with
``SO_REUSEPORT`` so the kernel spreads connections across them. Forking, rather
than starting ``sse-hub serve`` again, spares each worker an interpreter start
and its imports (about 0.35 s of CPU each), which counts most when a restarted
hub's clients all reconnect at once. A worker leaves with ``os._exit``: the
supervisor's exit handlers and its embedded database are not the worker's to
run or stop. Workers get a parent-death signal: they never outlive the
supervisor. SIGTERM/SIGINT to the supervisor is passed on; it waits for the
workers' graceful stop, then stops the embedded database.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import logging
import math
import os
import resource
import signal
import time
from types import FrameType
from typing import NoReturn

from sse_hub import runner
from sse_hub.accesslog import ACCESS_LOGGER_NAME, AccessLogger, MalformedRequestFilter
from sse_hub.app import create_app, prepare_database
from sse_hub.config import Settings

log = logging.getLogger(__name__)

# Connections the kernel queues before the hub accepts them. aiohttp's 128
# overflows in a reconnect storm (every client of a restarted hub at once), and
# each overflow costs its client a SYN retry, a second or more. The kernel caps
# it at net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 4096
# Open files a process needs besides its streams: the listening socket, the
# database connections (counted apart), files being downloaded, logs.
OPEN_FILES_RESERVE = 64
RESTART_BACKOFF_S = 1.0
# Allocations between young collections, and collections between older ones
# (see _collect_garbage_less_often).
GC_YOUNG_THRESHOLD = 50_000
GC_MIDDLE_THRESHOLD = 20
GC_OLD_THRESHOLD = 100
MAX_RESTARTS_PER_WORKER = 5
_PR_SET_PDEATHSIG = 1
# The signals the supervisor handles and passes on to its workers.
_PASSED_ON = frozenset({signal.SIGTERM, signal.SIGINT})
# How often a worker's exit is polled while the supervisor waits for it.
_WAIT_POLL_S = 0.05


def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    _raise_open_files_limit()
    if settings.workers > 1:
        return _supervise(settings)
    settings = _streams_the_open_files_limit_holds(settings)
    _collect_garbage_less_often()
    app = create_app(settings)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
    if settings.no_access_log:
        logging.getLogger(ACCESS_LOGGER_NAME).setLevel(logging.WARNING)
    loop = _new_loop()
    main = runner.serve(
        app,
        host=settings.host,
        port=settings.port,
        backlog=LISTEN_BACKLOG,
        reuse_port=reuse_port,
        # The front door closes a connection that sends nothing in that time; the
        # connections it hands to aiohttp get aiohttp's keep-alive timer, which
        # starts when aiohttp gets the connection, is not reset by bytes that do
        # not complete a request, and does not fire while a handler runs: it bounds
        # slow request heads (and idle keep-alive) without touching downloads.
        head_timeout_s=settings.request_head_timeout_s,
        keepalive_timeout=settings.request_head_timeout_s,
        shutdown_timeout=settings.shutdown_timeout_s,
        handler_cancellation=True,
        access_log_class=AccessLogger,
        # None: aiohttp then keeps no access logger per connection at all.
        access_log=None if settings.no_access_log else logging.getLogger(ACCESS_LOGGER_NAME),
        announce=lambda: log.info(
            "sse-hub serving on http://%s:%d (pid %d)", settings.host, settings.port, os.getpid()
        ),
    )
    runner.run(loop, main)
    return 0


def _raise_open_files_limit() -> None:
    """Every stream is a socket: take the hard limit on open files, not the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open files limit raised from %d to %d", soft, hard)


def _streams_the_open_files_limit_holds(settings: Settings) -> Settings:
    """``--max-streams``, lowered to what the open files limit holds.

    A process past its limit cannot accept: clients would wait for nothing
    instead of getting ``503`` with ``Retry-After`` as a full hub answers.
    """
    limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit == resource.RLIM_INFINITY:
        return settings
    room = max(1, limit - settings.db_pool_size - 1 - OPEN_FILES_RESERVE)
    if settings.max_streams <= room:
        return settings
    log.warning(
        "the open files limit (%d) holds about %d streams: --max-streams %d lowered to %d;"
        " raise the limit (ulimit -Hn, systemd's LimitNOFILE=) for more",
        limit,
        room,
        settings.max_streams,
        room,
    )
    return dataclasses.replace(settings, max_streams=room)


def _collect_garbage_less_often() -> None:
    """Run Python's cycle collector far less often than its defaults (700, 10, 10).

    Every request and stream allocates container objects, almost all freed by
    reference counting; with the defaults the collector runs every few requests,
    and its older generations walk every open stream's objects again and again.
    Measured on stream set-up and fan-out: about a fifth less CPU.
    """
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed: its transports write in C, which the fan-out lives on."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Worker:
    """A forked worker process, with the part of ``subprocess.Popen`` the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout_s: float = math.inf) -> int | None:
        """The exit code, or None if the worker still runs after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(_WAIT_POLL_S)
        return self.returncode


def _fork_worker(settings: Settings) -> _Worker:
    """Fork a worker that serves ``settings``; the supervisor's signals wait until it is set up."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _PASSED_ON)
    try:
        pid = os.fork()
        if pid == 0:
            _work(settings)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _PASSED_ON)
    return _Worker(pid)


def _work(settings: Settings) -> NoReturn:
    """Serve in a forked worker, then leave with ``os._exit``.

    Never back through the supervisor's code: its ``finally`` and exit handlers
    stop the database that the other workers still use.
    """
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _PASSED_ON)
        _die_with_parent()
        code = serve(settings, reuse_port=True)
    except KeyboardInterrupt:
        code = 0  # as `sse-hub serve` ends on Ctrl-C
    except SystemExit as exc:  # as the interpreter ends: aiohttp raises it on a second signal
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        os._exit(code)


def _supervise(settings: Settings) -> int:
    database = asyncio.run(prepare_database(settings))
    worker_settings = dataclasses.replace(settings, workers=1, dsn=database.dsn)
    stopping = False
    workers = [_fork_worker(worker_settings) for _ in range(settings.workers)]
    restarts = [0] * len(workers)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in _PASSED_ON}
    log.info(
        "sse-hub supervising %d workers on http://%s:%d", len(workers), settings.host, settings.port
    )
    try:
        while not stopping:
            time.sleep(0.2)
            for index, worker in enumerate(workers):
                if worker.poll() is None or stopping:
                    continue
                if restarts[index] >= MAX_RESTARTS_PER_WORKER:
                    log.error("worker %d keeps exiting; stopping the hub", index)
                    on_signal(signal.SIGTERM, None)
                    break
                restarts[index] += 1
                log.warning("worker %d exited with %s; restarting", index, worker.returncode)
                time.sleep(RESTART_BACKOFF_S)
                workers[index] = _fork_worker(worker_settings)
        deadline = time.monotonic() + settings.shutdown_timeout_s + 5
        for worker in workers:
            if worker.wait(max(0.1, deadline - time.monotonic())) is None:
                worker.kill()
                worker.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        asyncio.run(database.close())
    return 0
