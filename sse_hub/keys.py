"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from sse_hub.hub import Hub

HUB = web.AppKey("sse_hub.hub", Hub)
