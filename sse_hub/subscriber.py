"""One connected client's place in the event order, and where its frames go.

The broker calls ``offer`` for every matching event and ``flush`` once per
dispatched batch, and never waits. A subscriber bound to a transport (an HTTP
stream) has its frames written straight into that transport at flush, as the
pre-encoded chunked bytes every subscriber shares: no task wakes up and no
per-subscriber encoding happens on the live path. A subscriber without a
transport (``sse-hub tail``, unit tests) keeps the frames until ``take``.

Either way the bytes waiting for one client are bounded: once its transport's
unsent bytes (or its kept frames) would pass the limit, the subscriber falls
``BEHIND``, stops taking live frames, and its feed reads what it missed from the
database. The hub's pace never depends on how fast a client reads, and no event
is dropped silently.

``position`` is the id up to which this subscriber has everything it should
have; events at or below it are ignored, which also deduplicates overlapping
patterns (``orders/*`` and ``*``) and the seam between replay and live delivery.
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Protocol

from sse_hub.events import TopicPattern

if TYPE_CHECKING:
    from sse_hub.broker import Encoded


class State(enum.Enum):
    LIVE = "live"
    BEHIND = "behind"
    CLOSED = "closed"


class WriteTarget(Protocol):
    """What a subscriber needs of a transport (``asyncio.Transport`` has it all)."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...


class Subscriber:
    __slots__ = (
        "_buffered_bytes",
        "_frames",
        "_limit_bytes",
        "_ready",
        "_transport",
        "_waiter",
        "bytes_written",
        "close_reason",
        "last_write_s",
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
        transport: WriteTarget | None = None,
    ) -> None:
        self.patterns = patterns
        self.position = position
        self.state = State.LIVE if live else State.BEHIND
        self.overflows = 0
        self.bytes_written = 0  # into the transport, chunk framing included (for /metrics)
        self.close_reason = ""
        self.last_write_s = 0.0
        self._limit_bytes = buffer_limit_bytes
        self._transport = transport
        self._ready = transport is None  # a transport takes frames once the headers are out
        # Made at the first frame: an idle stream never needs one.
        self._frames: list[bytes] | None = None
        self._buffered_bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event: Encoded) -> bool:
        """Queue one event for the next ``flush``; returns whether it was queued."""
        if self.state is not State.LIVE or event.id <= self.position:
            return False
        transport = self._transport
        data = event.frame if transport is None else event.chunk
        frames = self._frames
        if frames is None:
            frames = self._frames = []
        if not frames and transport is not None:
            self._buffered_bytes = transport.get_write_buffer_size()
        size = len(data)
        if self._buffered_bytes + size > self._limit_bytes:
            self.state = State.BEHIND
            self.overflows += 1
            self._wake()
            return False
        frames.append(data)
        self._buffered_bytes += size
        self.position = event.id
        return True

    def flush(self, now_s: float) -> None:
        """Write what was queued in this batch to the transport, or wake the reader."""
        transport = self._transport
        if transport is None:
            self._wake()
            return
        frames = self._frames
        if not self._ready or not frames:
            return
        if transport.is_closing():
            frames.clear()
            self.close("gone")
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        transport.write(data)
        self.bytes_written += len(data)
        frames.clear()
        self.last_write_s = now_s

    def beat(self, now_s: float, silence_s: float, chunk: bytes) -> bool:
        """Write a heartbeat ``chunk`` if this live stream has been silent for ``silence_s``."""
        transport = self._transport
        if (
            transport is None
            or not self._ready
            or self.state is not State.LIVE
            or now_s - self.last_write_s < silence_s
            or transport.get_write_buffer_size() > 0  # not silent: the client is just slow
        ):
            return False
        if transport.is_closing():
            self.close("gone")
            return False
        transport.write(chunk)
        self.bytes_written += len(chunk)
        self.last_write_s = now_s
        return True

    @property
    def writes_itself(self) -> bool:
        """Live frames and heartbeats go straight to a transport (no reader to wake)."""
        return self._transport is not None

    def ready(self, now_s: float) -> None:
        """The response headers are written: frames may go to the transport from now on."""
        self._ready = True
        self.last_write_s = now_s
        self.flush(now_s)

    def take(self) -> bytes:
        """Everything kept for a subscriber without transport (empty when nothing is)."""
        frames = self._frames
        if self._transport is not None or not frames:
            return b""
        self._frames, self._buffered_bytes = None, 0
        return frames[0] if len(frames) == 1 else b"".join(frames)

    @property
    def buffer_limit_bytes(self) -> int:
        return self._limit_bytes

    @property
    def buffered_bytes(self) -> int:
        if self._transport is not None:
            return self._transport.get_write_buffer_size() + sum(map(len, self._frames or ()))
        return self._buffered_bytes

    def go_live(self, covered_through: int) -> None:
        """Everything up to ``covered_through`` was read from the store; take live frames now."""
        if self.state is State.CLOSED:
            return
        if covered_through >= self.position:
            # The broker's own int when equal: thousands of live streams then hold
            # one object instead of one copy each of the same id.
            self.position = covered_through
        self.state = State.LIVE

    def close(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        self._wake()

    async def wait(self, timeout_s: float | None) -> None:
        """Wait for kept frames, a state change, or the timeout (``None``: no timeout)."""
        if self.take_ready() or self.state is not State.LIVE:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = None if timeout_s is None else loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    def changed(self) -> asyncio.Future[None]:
        """A future done at the next state change or kept frame (no timeout).

        The same as ``wait(None)`` without a coroutine of its own: a stream the
        broker writes for waits on it for its whole life, and this keeps that
        wait to one small object.
        """
        waiter = asyncio.get_running_loop().create_future()
        if self.take_ready() or self.state is not State.LIVE:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter

    def take_ready(self) -> bool:
        return self._transport is None and bool(self._frames)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
