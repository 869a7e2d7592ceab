"""``python -m sse_hub`` is ``sse-hub``."""

from __future__ import annotations

import sys

from sse_hub.cli import main

if __name__ == "__main__":
    sys.exit(main())
