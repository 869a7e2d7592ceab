"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from sse_hub.hub import Hub
from sse_hub.live import LiveStreams

HUB = web.AppKey("sse_hub.hub", Hub)
LIVE_STREAMS = web.AppKey("sse_hub.live_streams", LiveStreams)
