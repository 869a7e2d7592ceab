from __future__ import annotations

from sse_hub.heartbeats import MAX_TICK_S, HeartbeatWheel, tick_for


def test_the_tick_is_a_quarter_of_the_silence_at_most_a_second() -> None:
    assert tick_for(15.0) == MAX_TICK_S == 1.0
    assert tick_for(0.2) == 0.05


def test_an_item_comes_due_at_the_first_tick_at_or_after_its_time() -> None:
    wheel: HeartbeatWheel[str] = HeartbeatWheel(silence_s=4.0, now_s=0.0)
    wheel.add("a", 2.5)
    wheel.add("b", 3.0)
    assert wheel.take_due(2.9) == []
    assert wheel.take_due(3.0) == ["a", "b"]
    assert wheel.take_due(3.5) == []  # taken items leave the wheel
    assert len(wheel) == 0


def test_an_item_already_due_waits_for_the_next_tick() -> None:
    wheel: HeartbeatWheel[str] = HeartbeatWheel(silence_s=4.0, now_s=10.0)
    wheel.add("late", 1.0)
    assert wheel.take_due(10.5) == []
    assert wheel.take_due(11.0) == ["late"]


def test_a_due_time_past_the_ring_is_clamped_to_its_last_slot() -> None:
    wheel: HeartbeatWheel[str] = HeartbeatWheel(silence_s=4.0, now_s=0.0)
    wheel.add("far", 1000.0)
    wheel.add("near", 4.0)
    assert wheel.take_due(4.0) == ["near"]
    assert wheel.take_due(5.0) == ["far"]  # at most one silence and a tick ahead


def test_after_a_long_pause_everything_is_due_once() -> None:
    wheel: HeartbeatWheel[int] = HeartbeatWheel(silence_s=4.0, now_s=0.0)
    for item in range(5):
        wheel.add(item, 1.0 + item)
    assert sorted(wheel.take_due(3600.0)) == [0, 1, 2, 3, 4]
    assert wheel.take_due(7200.0) == []
