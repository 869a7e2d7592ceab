"""Running the load client: one ``python -m bench.client`` process per job, its JSON result.

The job goes in on stdin, the result is the last line of stdout (progress goes
to stderr); a client that does not end within its timeout is killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_client_job(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run one load client process on ``job``; raises ``RuntimeError`` when it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.client"],
        input=json.dumps(job).encode(),
        stdout=subprocess.PIPE,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"client exited with {completed.returncode}")
    result: dict[str, Any] = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return result
