from __future__ import annotations

from sse_hub.broker import InMemoryBroker, TopicIndex
from sse_hub.events import TopicPattern
from sse_hub.frames import Encoded
from sse_hub.subscriber import State, Subscriber
from tests.test_subscriber import RecordingSink

SINKS: dict[Subscriber, RecordingSink] = {}


def sub(*patterns: str, position: int = 0, live: bool = True) -> Subscriber:
    subscriber = Subscriber(
        tuple(TopicPattern(p) for p in patterns),
        position=position,
        live=live,
        buffer_limit_bytes=1 << 20,
    )
    SINKS[subscriber] = RecordingSink()
    subscriber.attach(SINKS[subscriber], 0.0)
    return subscriber


def written(subscriber: Subscriber) -> bytes:
    return SINKS[subscriber].written


def ev(event_id: int, topic: str) -> Encoded:
    return Encoded(event_id, topic, f"<{event_id}>".encode())


def test_routing_exact_prefix_and_all() -> None:
    broker = InMemoryBroker()
    exact, prefix, deep, everything, other = (
        sub("orders"),
        sub("orders/*"),
        sub("orders/eu/*"),
        sub("*"),
        sub("users/*"),
    )
    for s in (exact, prefix, deep, everything, other):
        broker.subscribe(s)
    broker.dispatch([ev(1, "orders"), ev(2, "orders/1"), ev(3, "orders/eu/2"), ev(4, "users")])
    assert written(exact) == b"<1>"
    assert written(prefix) == b"<2><3>"
    assert written(deep) == b"<3>"
    assert written(everything) == b"<1><2><3><4>"
    assert written(other) == b""
    assert broker.last_id == 4


def test_overlapping_patterns_deliver_once() -> None:
    broker = InMemoryBroker()
    s = sub("a/*", "a/b/*", "*", "a/b/c")
    broker.subscribe(s)
    assert broker.dispatch([ev(1, "a/b/c")]) == 1
    assert written(s) == b"<1>"


def test_unsubscribe_stops_delivery_and_cleans_index() -> None:
    broker = InMemoryBroker()
    s = sub("x", "y/*")
    broker.subscribe(s)
    assert len(broker) == 1
    broker.unsubscribe(s)
    assert len(broker) == 0
    broker.dispatch([ev(1, "x"), ev(2, "y/1")])
    assert written(s) == b""
    assert list(broker._index.all()) == []
    assert broker._index._exact == {}
    assert broker._index._prefix == {}


def test_unsubscribing_a_stranger_or_twice_changes_nothing() -> None:
    broker = InMemoryBroker()
    member, stranger = sub("orders", "news/*"), sub("orders", "news/*", "*")
    broker.subscribe(member)
    broker.unsubscribe(stranger)  # never subscribed: the buckets it names stay
    broker.dispatch([ev(1, "orders"), ev(2, "news/1")])
    assert (len(broker), written(member), written(stranger)) == (1, b"<1><2>", b"")
    broker.unsubscribe(member)
    broker.unsubscribe(member)
    broker.dispatch([ev(3, "orders")])
    assert (len(broker), written(member)) == (0, b"<1><2>")  # nothing after unsubscribing


def test_index_lookup_touches_only_relevant_buckets() -> None:
    index = TopicIndex()
    many = [sub(f"topic/{n}") for n in range(5000)]
    for s in many:
        index.add(s)
    target = sub("needle")
    index.add(target)
    buckets = list(index.matching("needle"))
    assert buckets == [{target}]


def test_go_live_only_when_covered() -> None:
    broker = InMemoryBroker(last_id=10)
    s = sub("a", position=5, live=False)
    broker.subscribe(s)
    assert not broker.try_go_live(s, 9)
    assert s.state is State.BEHIND
    assert broker.try_go_live(s, 10)
    assert s.state is State.LIVE
    broker.dispatch([ev(11, "a")])
    assert written(s) == b"<11>"


def test_close_closes_every_subscriber() -> None:
    broker = InMemoryBroker()
    subs = [sub("a"), sub("b/*"), sub("*")]
    for s in subs:
        broker.subscribe(s)
    broker.close("shutdown")
    assert all(s.state is State.CLOSED for s in subs)


def test_beat_writes_heartbeats_to_silent_live_streams_only() -> None:
    broker = InMemoryBroker(heartbeat_s=5.0, clock=lambda: 0.0)  # looks every second
    quiet, busy, slow, behind = sub("q"), sub("b"), sub("s"), sub("l", live=False)
    for s in (quiet, busy, slow, behind):
        broker.subscribe(s)
    SINKS[slow].backlog = 10  # still sending: not silent
    busy.last_write_s = 9.0
    assert broker.beat(10.0, b"HB") == 1
    assert [written(s) for s in (quiet, busy, slow, behind)] == [b"HB", b"", b"", b""]
    assert quiet.last_write_s == 10.0
    assert broker.beat(12.0, b"HB") == 0  # quiet was just written to, busy at 9
    assert broker.beat(13.9, b"HB") == 0  # busy is silent for 5 s only from 14
    assert broker.beat(14.0, b"HB") == 1
    assert broker.beat(15.0, b"HB") == 1
    assert [written(s) for s in (quiet, busy)] == [b"HBHB", b"HB"]
    SINKS[slow].backlog = 0
    assert broker.beat(16.0, b"HB") == 1  # slow, looked at every tick while it was sending
    assert written(slow) == b"HB"


def test_a_stream_written_to_gets_its_heartbeat_one_silence_after_its_last_write() -> None:
    clock = [0.0]
    broker = InMemoryBroker(heartbeat_s=4.0, clock=lambda: clock[0])  # looks every second
    s = sub("a")
    broker.subscribe(s)
    for second in range(1, 30):
        clock[0] = float(second)
        if second % 3 == 0:  # an event every 3 s, the last at 27: never silent for 4 s
            broker.dispatch([ev(second, "a")])
        assert broker.beat(clock[0], b"HB") == 0, second
    assert broker.beat(30.0, b"HB") == 0
    assert broker.beat(31.0, b"HB") == 1
    assert written(s).endswith(b"<27>HB")


def test_unsubscribed_streams_get_no_heartbeat_and_leave_the_wheel() -> None:
    broker = InMemoryBroker(heartbeat_s=4.0, clock=lambda: 0.0)
    gone, kept = sub("a"), sub("b")
    broker.subscribe(gone)
    broker.subscribe(kept)
    broker.unsubscribe(gone)
    assert broker.beat(4.0, b"HB") == 1
    assert (written(gone), written(kept)) == (b"", b"HB")
    assert broker.beat(100.0, b"HB") == 1  # only kept is still looked at


def test_bytes_sent_sums_the_open_streams_sinks() -> None:
    broker = InMemoryBroker()
    a, b = sub("a"), sub("*")
    broker.subscribe(a)
    broker.subscribe(b)
    broker.dispatch([ev(1, "a"), ev(2, "z")])
    assert broker.bytes_sent() == len(b"<1>") + len(b"<1><2>")
    broker.unsubscribe(b)
    assert broker.bytes_sent() == len(b"<1>")


def test_events_already_dispatched_are_never_dispatched_again() -> None:
    """A relay read may overlap what went out at commit: nothing twice, nothing backwards."""
    broker = InMemoryBroker()
    early, late = sub("*"), sub("*")
    broker.subscribe(early)
    assert broker.dispatch([ev(1, "t"), ev(2, "t"), ev(3, "t")]) == 3
    broker.subscribe(late)  # a subscriber joining at 3 must not get 2 and 3 from the overlap
    late.position = 0
    assert broker.dispatch([ev(2, "t"), ev(3, "t"), ev(4, "t")]) == 2
    assert written(early) == b"<1><2><3><4>"
    assert written(late) == b"<4>"
    broker.dispatch([ev(3, "t")])
    assert broker.last_id == 4
