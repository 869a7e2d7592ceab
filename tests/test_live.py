"""A stream leaves aiohttp once its head is sent, and keeps working without it."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from sse_hub.keys import LIVE_STREAMS
from tests.conftest import app_of
from tests.sse_client import SSEStream, open_stream
from tests.test_stream import publish
from tests.waiting import wait_until

STREAMS = 20


async def test_live_streams_hold_no_task_and_no_aiohttp_connection(hub: TestServer) -> None:
    tasks_before = len(asyncio.all_tasks())
    streams: list[SSEStream] = []
    try:
        for _ in range(STREAMS):
            stream = await open_stream(hub.port, "/events?topic=live")
            await stream.started()
            streams.append(stream)
        live = app_of(hub)[LIVE_STREAMS]
        assert len(live) == STREAMS
        assert hub.handler is not None
        # aiohttp's handlers returned: it keeps neither the connections nor their tasks.
        handler = hub.handler
        await wait_until(lambda: not handler.connections)
        assert len(asyncio.all_tasks()) < tasks_before + STREAMS
        event_id = await publish(hub, "live", "still here")
        for stream in streams:
            event = await stream.next_event()
            assert (event.data, int(event.id or 0)) == ("still here", event_id)
    finally:
        for stream in streams:
            stream.close()
    await wait_until(lambda: len(app_of(hub)[LIVE_STREAMS]) == 0)
