"""``sse-hub`` with ``tracemalloc`` on: each SIGUSR1 dumps a snapshot (for the idle profile).

Used only by the bench's profile pass, never for measured runs (tracing slows
every allocation). Snapshots go to ``$BENCH_TRACEMALLOC_DIR/snapshot-<n>.pickle``,
written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 12


def main() -> int:
    out_dir = Path(os.environ["BENCH_TRACEMALLOC_DIR"])
    counter = itertools.count()
    tracemalloc.start(FRAMES)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        path = out_dir / f"snapshot-{next(counter)}.pickle"
        partial = path.with_suffix(".partial")
        snapshot.dump(str(partial))
        partial.rename(path)

    signal.signal(signal.SIGUSR1, dump)
    from sse_hub.cli import main as hub_main

    return hub_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
