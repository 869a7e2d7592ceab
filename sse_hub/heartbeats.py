"""Which streams may owe a heartbeat now: each is looked at about once per silence period.

Walking every stream at every tick to find the silent ones costs most of an
idle hub's CPU at scale, and nearly every stream looked at is not due. Instead
each stream waits in one slot of a ring of ticks: the tick at which it will
have been silent for ``silence_s`` if nothing is written to it meanwhile. When
that tick comes, the stream is looked at: still silent, it gets its heartbeat;
written to since, it goes to the slot its last write points at. Writes never
touch the wheel (the fan-out path stays as it is), so a stream costs one look
per silence period however many events it gets, and a heartbeat goes out at
most one tick after it is due, as with a sweep every tick.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

MAX_TICK_S = 1.0

T = TypeVar("T")


def tick_for(silence_s: float) -> float:
    """How often to look: at most a quarter of the silence, at most a second."""
    return min(MAX_TICK_S, silence_s / 4)


class HeartbeatWheel(Generic[T]):
    __slots__ = ("_slots", "_tick", "silence_s", "tick_s")

    def __init__(self, silence_s: float, now_s: float) -> None:
        self.silence_s = silence_s
        self.tick_s = tick_for(silence_s)
        # Enough slots that any due time up to one silence ahead has its own.
        self._slots: list[list[T]] = [[] for _ in range(math.ceil(silence_s / self.tick_s) + 2)]
        self._tick = self._tick_of(now_s)  # the last tick whose slot was taken

    def _tick_of(self, time_s: float) -> int:
        return math.floor(time_s / self.tick_s)

    def add(self, item: T, due_s: float) -> None:
        """Look at ``item`` again at the first tick at or after ``due_s`` (at least the next)."""
        latest = self._tick + len(self._slots) - 1
        tick = min(max(math.ceil(due_s / self.tick_s), self._tick + 1), latest)
        self._slots[tick % len(self._slots)].append(item)

    def take_due(self, now_s: float) -> list[T]:
        """Every item whose tick has come since the last call; they leave the wheel."""
        now_tick = self._tick_of(now_s)
        due: list[T] = []
        for step in range(1, min(now_tick - self._tick, len(self._slots)) + 1):
            index = (self._tick + step) % len(self._slots)
            due += self._slots[index]
            self._slots[index] = []
        self._tick = max(self._tick, now_tick)
        return due

    def __len__(self) -> int:
        return sum(map(len, self._slots))
