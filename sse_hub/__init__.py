"""sse_hub: a Server-Sent Events hub on PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

from sse_hub.api import hub_of, publish_in_transaction
from sse_hub.app import create_app
from sse_hub.config import Settings
from sse_hub.errors import HubError
from sse_hub.hub import Hub

__all__ = ["Hub", "HubError", "Settings", "create_app", "hub_of", "publish_in_transaction"]
