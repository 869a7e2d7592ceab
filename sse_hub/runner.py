"""Running the application on one port, its connections met by the front door.

What ``aiohttp.web.run_app`` does for one TCP site, with one difference: the
listening socket's connections start at ``front_door.FrontDoor``, which hands
every request that is not a plain stream request to aiohttp's own handler.
SIGINT and SIGTERM stop it gracefully (aiohttp's runner turns them into
``GracefulExit``): stop listening, the application's shutdown (every stream
ends), then its cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from sse_hub.front_door import FrontDoorSite


def run(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` (``serve``) on ``loop`` until a signal stops it, then close the loop."""
    task = loop.create_task(main)
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            _cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    backlog: int,
    reuse_port: bool,
    head_timeout_s: float,
    announce: Callable[[], None],
    **runner_options: Any,
) -> None:
    """Serve ``app`` until cancelled; ``runner_options`` go to ``web.AppRunner``."""
    runner = web.AppRunner(app, handle_signals=True, **runner_options)
    await runner.setup()
    try:
        site = FrontDoorSite(
            runner,
            host=host,
            port=port,
            head_timeout_s=head_timeout_s,
            backlog=backlog,
            reuse_port=reuse_port,
        )
        await site.start()
        announce()
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        await runner.cleanup()


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception while the hub stopped",
                    "exception": task.exception(),
                    "task": task,
                }
            )
