"""sse_hub: a Server-Sent Events hub on PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

__all__: list[str] = []
