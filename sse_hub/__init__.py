"""sse_hub: a Server-Sent Events hub on PostgreSQL LISTEN/NOTIFY, and its Python client."""

from __future__ import annotations

from sse_hub.api import hub_of, publish_in_transaction
from sse_hub.app import create_app
from sse_hub.client import Client, Event, ProblemError, Reset, StreamError, Subscription
from sse_hub.config import Settings
from sse_hub.errors import HubError
from sse_hub.hub import Hub

__all__ = [
    "Client",
    "Event",
    "Hub",
    "HubError",
    "ProblemError",
    "Reset",
    "Settings",
    "StreamError",
    "Subscription",
    "create_app",
    "hub_of",
    "publish_in_transaction",
]
