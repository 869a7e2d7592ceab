"""One connected client's place in the event order, and its bounded buffer.

The broker calls ``offer`` for every matching event and never waits: a frame is
either appended to the buffer or, when the buffer is full, the subscriber falls
``BEHIND`` and will read what it missed from the database. Either way the hub's
pace does not depend on how fast this client reads, and no event is dropped
silently.

``position`` is the id up to which this subscriber has everything it should
have (queued or written); events at or below it are ignored, which also
deduplicates overlapping patterns (``orders/*`` and ``*``) and the seam between
replay and live delivery.
"""

from __future__ import annotations

import asyncio
import enum

from sse_hub.events import TopicPattern


class State(enum.Enum):
    LIVE = "live"
    BEHIND = "behind"
    CLOSED = "closed"


class Subscriber:
    __slots__ = (
        "_buffered_bytes",
        "_frames",
        "_limit_bytes",
        "_waiter",
        "close_reason",
        "overflows",
        "patterns",
        "position",
        "state",
    )

    def __init__(
        self,
        patterns: tuple[TopicPattern, ...],
        *,
        position: int,
        live: bool,
        buffer_limit_bytes: int,
    ) -> None:
        self.patterns = patterns
        self.position = position
        self.state = State.LIVE if live else State.BEHIND
        self.overflows = 0
        self.close_reason = ""
        self._limit_bytes = buffer_limit_bytes
        self._frames: list[bytes] = []
        self._buffered_bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event_id: int, frame: bytes) -> bool:
        """Queue one encoded event; returns whether it was queued. Never blocks."""
        if self.state is not State.LIVE or event_id <= self.position:
            return False
        size = len(frame)
        if self._buffered_bytes + size > self._limit_bytes:
            self.state = State.BEHIND
            self.overflows += 1
            self._wake()
            return False
        self._frames.append(frame)
        self._buffered_bytes += size
        self.position = event_id
        self._wake()
        return True

    def take(self) -> bytes:
        """Everything queued, as one chunk (empty when nothing is queued)."""
        if not self._frames:
            return b""
        frames, self._frames, self._buffered_bytes = self._frames, [], 0
        return frames[0] if len(frames) == 1 else b"".join(frames)

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    def go_live(self, covered_through: int) -> None:
        """Everything up to ``covered_through`` was read from the store; take live frames now."""
        if self.state is State.CLOSED:
            return
        self.position = max(self.position, covered_through)
        self.state = State.LIVE

    def close(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        self._wake()

    async def wait(self, timeout_s: float) -> bool:
        """Wait for a frame, a state change or the timeout; ``False`` on timeout."""
        if self._frames or self.state is not State.LIVE:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None
        return bool(self._frames) or self.state is not State.LIVE

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
