"""One connected client's place in the event order, and the sink its bytes go to.

The broker calls ``offer`` for every matching event and ``flush`` once per
dispatched batch, and never waits. At flush a subscriber hands the batch's
frames (the bytes every subscriber shares: nothing is encoded per subscriber)
to its sink in one write; the sink decides how they travel (an HTTP stream's
chunks, a terminal's lines). No task wakes up on the live path.

The bytes waiting for one client are bounded: once its sink's undelivered
bytes plus the batch would pass the limit, the subscriber falls ``BEHIND``,
stops taking live frames, and its feed reads what it missed from the database.
The hub's pace never depends on how fast a client reads, and no event is
dropped silently.

``position`` is the id up to which this subscriber has everything it should
have; events at or below it are ignored, which also deduplicates overlapping
patterns (``orders/*`` and ``*``) and the seam between replay and live delivery.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Protocol

from sse_hub.events import TopicPattern
from sse_hub.frames import Encoded


class State(enum.Enum):
    LIVE = "live"
    BEHIND = "behind"
    CLOSED = "closed"


class Sink(Protocol):
    """Where a subscriber's frames go. It frames and counts the bytes; it never blocks."""

    bytes_sent: int  # on the wire, whatever framing the sink adds

    def write(self, frames: bytes) -> None: ...

    def pending_bytes(self) -> int:
        """Written but not yet taken by the client."""
        ...

    def is_closing(self) -> bool: ...


class Subscriber:
    __slots__ = (
        "_buffered_bytes",
        "_frames",
        "_limit_bytes",
        "_sink",
        "_waiter",
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
    ) -> None:
        self.patterns = patterns
        self.position = position
        self.state = State.LIVE if live else State.BEHIND
        self.overflows = 0
        self.close_reason = ""
        self.last_write_s = 0.0
        self._limit_bytes = buffer_limit_bytes
        # Set by ``attach`` once the client can take bytes (an HTTP stream's head is out);
        # until then frames wait in ``_frames``, within the same limit.
        self._sink: Sink | None = None
        # Made at the first frame: an idle stream never needs one.
        self._frames: list[bytes] | None = None
        self._buffered_bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event: Encoded) -> bool:
        """Queue one event for the next ``flush``; returns whether it was queued."""
        if self.state is not State.LIVE or event.id <= self.position:
            return False
        frames = self._frames
        if frames is None:
            frames = self._frames = []
        if not frames:
            sink = self._sink
            self._buffered_bytes = 0 if sink is None else sink.pending_bytes()
        data = event.frame
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
        """Hand what was queued in this batch to the sink, in one write."""
        frames = self._frames
        sink = self._sink
        if sink is None or not frames:
            return
        if sink.is_closing():
            frames.clear()
            self.close("gone")
            return
        sink.write(frames[0] if len(frames) == 1 else b"".join(frames))
        frames.clear()
        self.last_write_s = now_s

    def beat(self, now_s: float, silence_s: float, heartbeat: bytes) -> bool:
        """Write ``heartbeat`` if this live stream has been silent for ``silence_s``."""
        sink = self._sink
        if (
            sink is None
            or self.state is not State.LIVE
            or now_s - self.last_write_s < silence_s
            or sink.pending_bytes() > 0  # not silent: the client is just slow
        ):
            return False
        if sink.is_closing():
            self.close("gone")
            return False
        sink.write(heartbeat)
        self.last_write_s = now_s
        return True

    def attach(self, sink: Sink, now_s: float) -> None:
        """The client can take bytes: frames go to ``sink`` from now on."""
        self._sink = sink
        self.last_write_s = now_s
        self.flush(now_s)

    @property
    def bytes_sent(self) -> int:
        return 0 if self._sink is None else self._sink.bytes_sent

    @property
    def buffer_limit_bytes(self) -> int:
        return self._limit_bytes

    @property
    def buffered_bytes(self) -> int:
        pending = 0 if self._sink is None else self._sink.pending_bytes()
        return pending + sum(map(len, self._frames or ()))

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

    def changed(self) -> asyncio.Future[None]:
        """A future done at the next state change (falling behind, closing).

        A live stream waits on it for its whole life: one small object, no
        coroutine chain.
        """
        waiter = asyncio.get_running_loop().create_future()
        if self.state is not State.LIVE:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None
