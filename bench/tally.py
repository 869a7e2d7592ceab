"""The scale scenario's arithmetic, pure: who opens which streams, what each stream missed.

The scenario runs its load client as several processes, each opening its share
of the streams from loopback source addresses of its own, and adds up what
they report. One address gives a client some 28,000 ephemeral ports, but
``connect`` finds a free one more slowly the more of them are taken: with
12,500 sockets on one address it cost the client more CPU per stream than the
server spent, and in a reconnect storm that CPU is the machine's. After the
reconnect storm each stream checks the ids it received against the ids the
database holds for its topic, and says when it had caught up: when it had every
event that was published before it reconnected.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SOURCES_PER_CLIENT = 16  # a client process's loopback addresses: ~800 streams each at 100,000


def shares(total: int, parts: int) -> list[int]:
    """``total`` streams split over ``parts`` processes, the first ones taking the remainder."""
    if parts < 1:
        raise ValueError("at least one part")
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def source_addresses(index: int, count: int = SOURCES_PER_CLIENT) -> list[str]:
    """The loopback addresses client process ``index`` binds its sockets to, in turn.

    ``127.0.<index + 1>.<1..count>``: never ``127.0.0.1``, the servers' address.
    """
    if not 0 <= index < 254 or not 1 <= count <= 254:
        raise ValueError(f"no loopback source addresses for client {index}")
    return [f"127.0.{index + 1}.{host}" for host in range(1, count + 1)]


@dataclass(frozen=True)
class IdCheck:
    """One stream's ids against those published: all three are 0 when nothing went wrong."""

    missed: int  # published, never received
    duplicates: int  # received more than once (each extra copy counts)
    unexpected: int  # received, never published on this topic

    def __add__(self, other: IdCheck) -> IdCheck:
        return IdCheck(
            self.missed + other.missed,
            self.duplicates + other.duplicates,
            self.unexpected + other.unexpected,
        )


def check_ids(received: Iterable[int], published: frozenset[int] | set[int]) -> IdCheck:
    seen: set[int] = set()
    duplicates = 0
    for event_id in received:
        if event_id in seen:
            duplicates += 1
        else:
            seen.add(event_id)
    return IdCheck(
        missed=len(published - seen),
        duplicates=duplicates,
        unexpected=len(seen - published),
    )


def caught_up_ns(
    ids: Sequence[int],
    received_ns: Sequence[int],
    reconnected_ns: int,
    accepted_ids: Sequence[int],
    accepted_ns: Sequence[int],
) -> int | None:
    """When a stream that reconnected at ``reconnected_ns`` had caught up; ``None``: never.

    Caught up means it had the last event the publisher had seen accepted by
    then (``accepted_*``: ids and times of each accepted publish, in order). A
    stream that already had that event before it dropped was caught up as soon
    as it was back.
    """
    known = bisect.bisect_right(accepted_ns, reconnected_ns)
    if known == 0:
        return reconnected_ns
    head = accepted_ids[known - 1]
    for event_id, at_ns in zip(ids, received_ns, strict=True):
        if event_id >= head:
            return max(at_ns, reconnected_ns)
    return None


def combine(
    replies: Sequence[Mapping[str, Any]],
    *,
    sums: Iterable[str] = (),
    maxima: Iterable[str] = (),
    minima: Iterable[str] = (),
    lists: Iterable[str] = (),
    list_limit: int = 20,
) -> dict[str, Any]:
    """One figure from each client process's reply: totals, latest, earliest, first items.

    A key missing from a reply, or ``None`` there, is left out; a maximum or
    minimum that no reply has is ``None``.
    """
    merged: dict[str, Any] = {}
    for key in sums:
        merged[key] = sum(reply[key] for reply in replies if reply.get(key) is not None)
    for key in maxima:
        values = [reply[key] for reply in replies if reply.get(key) is not None]
        merged[key] = max(values) if values else None
    for key in minima:
        values = [reply[key] for reply in replies if reply.get(key) is not None]
        merged[key] = min(values) if values else None
    for key in lists:
        merged[key] = [item for reply in replies for item in reply.get(key) or []][:list_limit]
    return merged


def add_counts(counts: Iterable[Mapping[Any, int]]) -> dict[str, int]:
    """Counters by name (statuses, kinds of failure) from each process, added up."""
    total: dict[str, int] = {}
    for one in counts:
        for key, count in one.items():
            total[str(key)] = total.get(str(key), 0) + count
    return total


def seconds_between(start_ns: int | None, end_ns: int | None) -> float | None:
    if start_ns is None or end_ns is None:
        return None
    return (end_ns - start_ns) / 1e9
