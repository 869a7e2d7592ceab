"""A consumer that disconnects, misses events, resumes from its last id, and proves
it missed nothing.

    python examples/replay.py            # with `make run` in another terminal
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

from sse_hub.frames import FrameParser, ParsedFrame

HUB = os.environ.get("HUB", "http://127.0.0.1:8080")
TOPIC = "replay-demo"


async def take(response: aiohttp.ClientResponse, count: int) -> list[ParsedFrame]:
    """Read ``count`` events (frames with data) from an open stream."""
    parser = FrameParser()
    events: list[ParsedFrame] = []
    async for chunk in response.content.iter_any():
        events += [frame for frame in parser.feed(chunk) if frame.data is not None]
        if len(events) >= count:
            break
    return events[:count]


async def publish(session: aiohttp.ClientSession, data: str) -> int:
    async with session.post(f"{HUB}/events", json={"topic": TOPIC, "data": data}) as response:
        response.raise_for_status()
        return int((await response.json())["id"])


async def main() -> None:
    url = f"{HUB}/events?topic={TOPIC}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # The hub answers with headers once the stream is subscribed: nothing after is missed.
        async with session.get(url) as stream:
            published = [await publish(session, f"first {n}") for n in range(3)]
            seen = await take(stream, 3)
        last_id = seen[-1].id or ""
        print(f"received {[e.id for e in seen]}, disconnected after id {last_id}")

        missed = [await publish(session, f"while away {n}") for n in range(4)]
        print(f"published {missed} while disconnected")

        async with session.get(url, headers={"Last-Event-ID": last_id}) as stream:
            resumed = await take(stream, len(missed))
        got = [int(e.id or 0) for e in resumed]
        print(f"resumed with Last-Event-ID {last_id}: received {got}")
        assert [int(e.id or 0) for e in seen] == published, "the first read was not complete"
        assert got == missed, "the resumed stream lost or repeated an event"
        print("nothing missed, nothing repeated")


if __name__ == "__main__":
    asyncio.run(main())
