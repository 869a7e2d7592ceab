"""Owning background tasks: start them named, stop them without swallowing our own cancellation."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to end.

    The task's ``CancelledError`` is expected and absorbed; if the caller itself
    is being cancelled meanwhile, that cancellation propagates.
    """
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
