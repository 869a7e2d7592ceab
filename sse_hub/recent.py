"""The most recently dispatched events, kept so that recent resumes need no query.

A client that reconnects usually missed a few events the hub dispatched
seconds ago. The broker records every event it dispatches here (the same
encoded frame every subscriber got), and a feed asks ``page`` for what lies
after its position before it asks the database.

The ring holds one run of consecutive ids and nothing else: an id that does
not follow the newest one (retention removed rows a lagging relay never read)
starts it over. A page is therefore complete exactly when the run reaches from
the position to ``upto``; there is no hole a missing id could hide in, and
finding where a position starts is arithmetic on the id.

It must never answer for history that retention may already have removed:
the database path owes such a client a reset notice. Retention removes the
oldest ids first and stops at the first younger event, so once the event at
the position (or the first one after it) is retained, everything after it is
too. The ring serves a range only when that event is younger than
``--retention`` minus a margin for the clock skew between hub and database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from sse_hub.events import TopicPattern, any_matches
from sse_hub.frames import Encoded

# A reconnect storm replays what was missed in the seconds a restart or a
# network blip takes; at thousands of events per second that is a few
# thousand events. The byte bound keeps the ring small next to the
# subscribers' own buffers, whatever the size of the events.
RECENT_MAX_EVENTS = 4096
RECENT_MAX_BYTES = 4 * 1024 * 1024
# Clocks of hub and database may disagree; the ring stays this far from the
# retention horizon (and with a short --retention, it is never used).
SKEW_MARGIN_MIN_S = 60.0
SKEW_MARGIN_FRACTION = 0.1


def max_age_for(retention_s: float) -> float:
    """How old the oldest event a page needs may be; ``<= 0``: never serve from memory."""
    return retention_s - max(SKEW_MARGIN_MIN_S, SKEW_MARGIN_FRACTION * retention_s)


class RecentPage(NamedTuple):
    frames: bytes  # the matching events' frames, in id order
    events: int


class RecentEvents:
    """A bounded ring of the newest dispatched events, consecutive ids only."""

    __slots__ = (
        "_bytes",
        "_clock",
        "_count",
        "_head",
        "_last_id",
        "_max_bytes",
        "_slots",
        "max_age_s",
    )

    def __init__(
        self,
        *,
        max_age_s: float = 0.0,
        max_events: int = RECENT_MAX_EVENTS,
        max_bytes: int = RECENT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age_s = max_age_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._slots: list[Encoded | None] = [None] * max_events
        self._head = 0  # slot of the oldest event
        self._count = 0
        self._bytes = 0
        self._last_id = 0

    def __len__(self) -> int:
        return self._count

    @property
    def first_id(self) -> int | None:
        return self._last_id - self._count + 1 if self._count else None

    @property
    def last_id(self) -> int | None:
        return self._last_id if self._count else None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def max_events(self) -> int:
        return len(self._slots)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def clear(self) -> None:
        self._slots = [None] * len(self._slots)
        self._head = self._count = self._bytes = 0

    def record(self, event: Encoded) -> None:
        """Keep ``event``, the newest dispatched; a gap in ids starts the ring over."""
        if self._count and event.id != self._last_id + 1:
            self.clear()
        size = len(event.frame)
        if size > self._max_bytes:
            self.clear()  # the next event starts a new run
            return
        slots = self._slots
        capacity = len(slots)
        while self._count and (self._count == capacity or self._bytes + size > self._max_bytes):
            oldest = slots[self._head]
            assert oldest is not None
            self._bytes -= len(oldest.frame)
            slots[self._head] = None
            self._head = (self._head + 1) % capacity
            self._count -= 1
        slots[(self._head + self._count) % capacity] = event
        self._count += 1
        self._bytes += size
        self._last_id = event.id

    def page(
        self,
        patterns: tuple[TopicPattern, ...],
        *,
        after: int,
        upto: int,
        max_bytes: int,
    ) -> RecentPage | None:
        """The matching events with ``after < id <= upto``; ``None`` if the ring cannot say.

        ``None`` when the ring does not hold the whole range (it must end at
        ``upto``), when its oldest event the range relies on may have been
        removed by retention, or when the matching frames pass ``max_bytes``.
        """
        count = self._count
        if not count or upto != self._last_id or after > upto or self.max_age_s <= 0:
            return None
        first_id = self._last_id - count + 1
        if after < first_id - 1:
            return None
        # The event at ``after`` (or the first after it) being retained
        # means nothing after it was removed (see the module's docstring).
        witness = self._at(max(after, first_id), first_id)
        if self._clock() - witness.created_s >= self.max_age_s:
            return None
        parts: list[bytes] = []
        size = 0
        for event_id in range(after + 1, upto + 1):
            event = self._at(event_id, first_id)
            if any_matches(patterns, event.topic):
                size += len(event.frame)
                if size > max_bytes:
                    return None
                parts.append(event.frame)
        return RecentPage(b"".join(parts), len(parts))

    def _at(self, event_id: int, first_id: int) -> Encoded:
        event = self._slots[(self._head + event_id - first_id) % len(self._slots)]
        assert event is not None
        return event
