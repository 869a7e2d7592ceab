"""Profiles of the hub: py-spy CPU samples and tracemalloc memory per stream, summarised.

py-spy writes collapsed stacks (``--format raw``: ``frame;frame;... count`` per
line; speedscope and flamegraph.pl open the file as it is). ``summarise_stacks``
turns them into the top frames by own time (the frame was on top of the stack)
and by cumulative time (the frame was anywhere in the stack).
"""

from __future__ import annotations

import linecache
import re
import shutil
import subprocess
import tracemalloc
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_LOCATION = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    import sys

    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.is_file() else None


def start_py_spy(pid: int, duration_s: float, out: Path, log: Path) -> subprocess.Popen[bytes]:
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install 'sse_hub[bench]')")
    command = [
        binary, "record", "--pid", str(pid), "--duration", str(max(1, int(duration_s))),
        "--rate", "250", "--format", "raw", "--nolineno", "--output", str(out),
    ]  # fmt: skip
    with open(log, "ab") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL)


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py)`` -> ``pkg/mod.py:func``."""
    match = _LOCATION.match(frame)
    if match is None:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "/sse_hub/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/sse_hub/":
                path = "sse_hub/" + path
            break
    return f"{path}:{match.group('func')}"


def summarise_stacks(path: Path, top: int = 15) -> tuple[str, int]:
    """A markdown table of the top frames by own and cumulative samples; and the total."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        stack = [_short(frame) for frame in match.group(1).split(";") if frame]
        count = int(match.group(2))
        total += count
        if stack:
            own[stack[-1]] += count
        for frame in set(stack):
            cumulative[frame] += count
    if total == 0:
        return "(no samples)", 0
    lines = ["| own % | frame | | cumulative % | frame |", "|---:|---|---|---:|---|"]
    own_top = own.most_common(top)
    # Frames on (nearly) every stack, like runpy and main(), say nothing: leave them out.
    cum_top = [item for item in cumulative.most_common() if item[1] < 0.995 * total][:top]
    for index in range(max(len(own_top), len(cum_top))):
        left = own_top[index] if index < len(own_top) else ("", 0)
        right = cum_top[index] if index < len(cum_top) else ("", 0)
        lines.append(
            f"| {100 * left[1] / total:.1f} | `{left[0]}` | | "
            f"{100 * right[1] / total:.1f} | `{right[0]}` |"
        )
    return "\n".join(lines), total


def summarise_memory(before: Path, after: Path, streams: int, top: int = 15) -> str:
    """Python allocations added by ``streams`` idle streams, per stream, by source line."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    stats = new.compare_to(old, "lineno")
    grown = sorted((s for s in stats if s.size_diff > 0), key=lambda s: s.size_diff, reverse=True)
    total = sum(s.size_diff for s in stats)
    lines = [
        f"Python heap added per stream (tracemalloc): {total / streams:,.0f} bytes "
        f"over {streams} streams.",
        "",
        "| bytes/stream | blocks/stream | where | source line |",
        "|---:|---:|---|---|",
    ]
    for stat in grown[:top]:
        frame = stat.traceback[0]
        where = _short(f"x ({frame.filename})").split(":", 1)[0] + f":{frame.lineno}"
        source = linecache.getline(frame.filename, frame.lineno).strip().replace("|", "\\|")
        lines.append(
            f"| {stat.size_diff / streams:,.0f} | {stat.count_diff / streams:.1f} | `{where}` "
            f"| `{source[:80]}` |"
        )
    return "\n".join(lines)
