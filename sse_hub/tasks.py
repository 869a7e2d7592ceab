"""Owning background tasks: stop them without swallowing our own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait for it to end.

    The task's own ``CancelledError`` is expected and absorbed. If the caller is
    cancelled while waiting, that propagates. A caller that was already being
    cancelled before (cleanup running inside a cancelled task, as aiohttp's
    ``run_app`` does on SIGTERM) still gets to finish its cleanup.
    """
    if task is None or task.done():
        return
    current = asyncio.current_task()
    cancelling_before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > cancelling_before:
            raise
