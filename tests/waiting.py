"""Waiting for a condition the code under test exposes no event for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEFAULT_TIMEOUT_S = 30.0


async def wait_until(
    condition: Callable[[], bool], timeout_s: float = DEFAULT_TIMEOUT_S, interval_s: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail after a generous ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - a state of another component, not an event
            await asyncio.sleep(interval_s)
