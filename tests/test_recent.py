"""The ring of recently dispatched events: dense runs, bounds, matching and the age rule."""

from __future__ import annotations

import pytest

from sse_hub.broker import InMemoryBroker
from sse_hub.events import TopicPattern
from sse_hub.frames import Encoded
from sse_hub.recent import RecentEvents, RecentPage, max_age_for
from sse_hub.subscriber import Subscriber

NOW_S = 1_000_000.0
MAX_AGE_S = 3600.0
NO_LIMIT = 1 << 30


def _event(event_id: int, topic: str = "t", *, created_s: float = NOW_S, size: int = 0) -> Encoded:
    frame = f"<{event_id}>".encode().ljust(size, b".")
    return Encoded(event_id, topic, frame, created_s)


def _ring(**kwargs: int) -> RecentEvents:
    return RecentEvents(max_age_s=MAX_AGE_S, clock=lambda: NOW_S, **kwargs)


def _all(ring: RecentEvents, after: int, upto: int, *patterns: str) -> RecentPage | None:
    topics = tuple(TopicPattern(p) for p in patterns or ("*",))
    return ring.page(topics, after=after, upto=upto, max_bytes=NO_LIMIT)


def test_a_page_holds_the_events_after_the_position_in_order() -> None:
    ring = _ring()
    for n in range(1, 11):
        ring.record(_event(n))
    assert _all(ring, 6, 10) == RecentPage(b"<7><8><9><10>", 4)
    assert _all(ring, 0, 10) == RecentPage(b"".join(f"<{n}>".encode() for n in range(1, 11)), 10)
    assert _all(ring, 10, 10) == RecentPage(b"", 0)


def test_a_range_the_ring_does_not_hold_whole_is_not_served() -> None:
    ring = _ring()
    for n in range(5, 11):
        ring.record(_event(n))
    assert _all(ring, 3, 10) is None  # 4 is not in the ring
    assert _all(ring, 4, 10) == RecentPage(b"<5><6><7><8><9><10>", 6)
    assert _all(ring, 4, 9) is None  # the page must end at the ring's newest id
    assert _all(ring, 11, 10) is None  # beyond what was dispatched
    assert _all(_ring(), 0, 0) is None  # an empty ring knows nothing


def test_a_gap_in_ids_starts_the_ring_over() -> None:
    """Fails when the ring keeps ids around a hole: a page would silently skip 4."""
    ring = _ring()
    for n in (1, 2, 3, 5, 6):
        ring.record(_event(n))
    assert (ring.first_id, ring.last_id, len(ring)) == (5, 6, 2)
    assert _all(ring, 2, 6) is None
    assert _all(ring, 3, 6) is None
    assert _all(ring, 4, 6) == RecentPage(b"<5><6>", 2)


def test_the_ring_keeps_at_most_max_events() -> None:
    ring = _ring(max_events=4)
    for n in range(1, 11):
        ring.record(_event(n))
    assert (ring.first_id, ring.last_id, len(ring)) == (7, 10, 4)
    assert _all(ring, 5, 10) is None
    assert _all(ring, 6, 10) == RecentPage(b"<7><8><9><10>", 4)


def test_the_ring_keeps_at_most_max_bytes() -> None:
    ring = _ring(max_bytes=250)
    for n in range(1, 11):
        ring.record(_event(n, size=100))
    assert (ring.first_id, ring.last_id, ring.size_bytes) == (9, 10, 200)
    ring.record(_event(11, size=300))  # larger than the ring: nothing is kept
    assert len(ring) == 0
    ring.record(_event(12, size=100))  # a new run starts
    assert (ring.first_id, ring.last_id) == (12, 12)


def test_a_page_past_the_subscribers_limit_is_left_to_the_database() -> None:
    ring = _ring()
    for n in range(1, 6):
        ring.record(_event(n, size=100))
    patterns = (TopicPattern("*"),)
    assert ring.page(patterns, after=0, upto=5, max_bytes=499) is None
    page = ring.page(patterns, after=0, upto=5, max_bytes=500)
    assert page is not None
    assert page.events == 5


TOPICS = [
    *("orders", "orders/", "orders/1", "orders/eu/2", "ordersx/1"),
    *("a/b/", "a//b", "a/b/c", "other"),
]
PATTERNS = [
    ("orders",),
    ("orders/*",),
    ("*",),
    ("orders/*", "*"),
    ("orders/*", "orders/1"),
    ("orders/eu/*", "other"),
    ("a/*",),
    ("a/b/*",),
]


@pytest.mark.parametrize("patterns", PATTERNS)
def test_a_page_matches_exactly_what_the_broker_would_deliver(patterns: tuple[str, ...]) -> None:
    """Each event once, whatever patterns match it, and only the events live delivery sends."""
    topics = tuple(TopicPattern(p) for p in patterns)
    events = [_event(n, topic) for n, topic in enumerate(TOPICS, 1)]
    ring = _ring()
    for event in events:
        ring.record(event)
    expected = _live_ids(topics, events)
    assert expected  # every case matches something
    page = ring.page(topics, after=0, upto=len(TOPICS), max_bytes=NO_LIMIT)
    assert page == RecentPage(b"".join(f"<{n}>".encode() for n in expected), len(expected))


def _live_ids(topics: tuple[TopicPattern, ...], events: list[Encoded]) -> list[int]:
    """What live delivery hands a subscriber with ``topics``, event by event."""
    ids = []
    for event in events:
        broker = InMemoryBroker(last_id=event.id - 1)
        sub = Subscriber(topics, position=event.id - 1, live=True, buffer_limit_bytes=NO_LIMIT)
        broker.subscribe(sub)
        if broker.dispatch([event]):
            ids.append(event.id)
    return ids


def test_only_events_younger_than_the_max_age_are_served() -> None:
    """Fails when an event retention may have removed is served (the reset would be lost)."""
    ring = _ring()
    ring.record(_event(1, created_s=NOW_S - MAX_AGE_S - 1))
    ring.record(_event(2, created_s=NOW_S - MAX_AGE_S + 1))
    ring.record(_event(3))
    assert _all(ring, 0, 3) is None  # needs 1, which may be gone
    assert _all(ring, 1, 3) is None  # 1 may be gone, and with it the reset 1 would owe
    assert _all(ring, 2, 3) == RecentPage(b"<3>", 1)  # 2 is retained, so is all after it


def test_a_ring_without_a_max_age_never_serves() -> None:
    ring = RecentEvents(clock=lambda: NOW_S)
    ring.record(_event(1))
    assert _all(ring, 0, 1) is None


def test_the_max_age_keeps_a_margin_from_retention() -> None:
    assert max_age_for(86400) == 86400 - 8640
    assert max_age_for(300) == 240
    assert max_age_for(60) <= 0  # short retentions: never from memory
    assert max_age_for(2) <= 0


def test_the_broker_records_what_it_dispatches_once() -> None:
    ring = _ring()
    broker = InMemoryBroker(recent=ring)
    broker.dispatch([_event(1), _event(2)])
    broker.dispatch([_event(2), _event(3)])  # a relay read overlapping what went out at commit
    assert _all(ring, 0, 3) == RecentPage(b"<1><2><3>", 3)
