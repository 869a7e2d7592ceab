"""CPU time and memory of a process and its descendants, read from ``/proc`` (Linux).

CPU is ``utime + stime`` of every thread of each process (``/proc/<pid>/stat``),
plus ``cutime + cstime`` of the root for children it has already reaped (a
PostgreSQL backend that exited mid-run). Memory is ``VmRSS`` (resident now) and
``VmHWM`` (the peak resident size over the process's life) from
``/proc/<pid>/status``.

``tree_run_s`` reads the scheduler's own count instead (``/proc/<pid>/task/<tid>/schedstat``,
nanoseconds on a CPU): a clock tick is 10 ms per process, too coarse for a
sub-second window summed over nine processes. ``listeners`` counts the sockets
listening on a port, one per ``SO_REUSEPORT`` worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    cpu_s: float
    pids: tuple[int, ...]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("latin-1")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        parent = parent_of(int(entry))
        if parent is not None:
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def process_cpu_s(pid: int, *, include_reaped: bool = False) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    ticks = int(fields[11]) + int(fields[12])
    if include_reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS_PER_S


def tree_cpu(root: int) -> CpuSample:
    pids = tuple(descendants(root))
    total = sum(process_cpu_s(pid, include_reaped=pid == root) for pid in pids)
    return CpuSample(total, pids)


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB; zeros when the process is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def tree_memory_kib(pids: tuple[int, ...] | list[int]) -> tuple[int, int]:
    rss = hwm = 0
    for pid in pids:
        one_rss, one_hwm = memory_kib(pid)
        rss += one_rss
        hwm += one_hwm
    return rss, hwm


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def machine_busy_s() -> float:
    """CPU seconds spent busy by the whole machine (all cores, all processes, the kernel)."""
    with open("/proc/stat", "rb") as handle:
        fields = handle.readline().split()[1:]
    # user nice system idle iowait irq softirq steal guest guest_nice
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]
    busy = sum(ticks[:8]) - idle
    return busy / CLOCK_TICKS_PER_S


def process_run_s(pid: int) -> float:
    """Seconds ``pid`` has spent on a CPU (all its threads), to the nanosecond; 0 when gone."""
    total_ns = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as handle:
                total_ns += int(handle.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total_ns / 1e9


def tree_run_s(pids: tuple[int, ...] | list[int]) -> float:
    """CPU seconds of live processes ``pids`` (what exited before is not counted)."""
    return sum(process_run_s(pid) for pid in pids)


def run_s_by_pid(root: int) -> dict[int, float]:
    """CPU seconds (the scheduler's nanosecond count) of ``root`` and each live process below it."""
    return {pid: process_run_s(pid) for pid in descendants(root)}


def run_s_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``run_s_by_pid`` readings of one tree.

    A process born in between counts whole; one that ended in between is not
    counted (add its parent's reaped children, ``process_cpu_s(include_reaped=True)``).
    """
    return sum(now_s - before.get(pid, 0.0) for pid, now_s in after.items())


_TCP_LISTEN = "0A"


def listeners(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (IPv4 and IPv6): one per ``SO_REUSEPORT`` process."""
    wanted = f"{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)  # the header line
                for line in handle:
                    fields = line.split()
                    if fields[1].rsplit(":", 1)[1] == wanted and fields[3] == _TCP_LISTEN:
                        count += 1
        except OSError:
            continue
    return count
