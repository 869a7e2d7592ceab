"""A consumer that leaves, misses events, comes back after its last id, and proves it
missed nothing, with the Python client (``sse_hub.Client``).

    python examples/replay.py            # with `make run` in another terminal

A subscription reconnects by itself after a drop or a hub restart; this consumer
leaves on purpose instead, as a program that stops and starts again does, keeping
the id of the last event it handled.
"""

from __future__ import annotations

import asyncio
import os

import sse_hub

HUB = os.environ.get("HUB", "http://127.0.0.1:8080")
TOPIC = "replay-demo"


async def take(subscription: sse_hub.Subscription, count: int) -> list[sse_hub.Event]:
    """Handle ``count`` events, then leave (the ``async with`` closes the connection)."""
    events: list[sse_hub.Event] = []
    async with asyncio.timeout(30), subscription:
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                break
    return events


async def main() -> None:
    async with sse_hub.Client(HUB) as hub:
        published = [await hub.publish(TOPIC, f"first {n}") for n in range(3)]
        # Start just before them, as if we had handled everything up to there.
        seen = await take(hub.subscribe(TOPIC, last_event_id=published[0] - 1), 3)
        saved = seen[-1].id
        print(f"received {[e.id for e in seen]}, left after id {saved}")

        missed = [await hub.publish(TOPIC, f"while away {n}") for n in range(4)]
        print(f"published {missed} while away")

        resumed = await take(hub.subscribe(TOPIC, last_event_id=saved), len(missed))
        got = [e.id for e in resumed]
        print(f"came back with last_event_id={saved}: received {got}")
        assert [e.id for e in seen] == published, "the first read was not complete"
        assert got == missed, "the resumed subscription lost or repeated an event"
        print("nothing missed, nothing repeated")


if __name__ == "__main__":
    asyncio.run(main())
