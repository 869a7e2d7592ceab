from __future__ import annotations

import pytest

from sse_hub.errors import InvalidInput, MalformedRequest, PayloadTooLarge
from sse_hub.events import (
    TopicPattern,
    covers,
    first_uncovered,
    parse_patterns,
    validate_data,
    validate_event_type,
    validate_topic,
)


@pytest.mark.parametrize("topic", ["a", "orders/42", "ünïcode/☃", "x" * 256, "with space"])
def test_valid_topics(topic: str) -> None:
    assert validate_topic(topic) == topic


@pytest.mark.parametrize(
    "topic",
    ["", "x" * 257, "é" * 129, "a\nb", "a\rb", "a\x00b", "tab\there", "del\x7f", "c1\x85", 5, None],
)
def test_invalid_topics(topic: object) -> None:
    with pytest.raises(InvalidInput):
        validate_topic(topic)


def test_lone_surrogate_is_not_utf8() -> None:
    with pytest.raises(InvalidInput, match="UTF-8"):
        validate_topic("a\ud800")


@pytest.mark.parametrize("event", ["a\nb", "a\rb", "", "x" * 257, 3])
def test_invalid_event_types(event: object) -> None:
    with pytest.raises(InvalidInput):
        validate_event_type(event)


def test_event_type_optional() -> None:
    assert validate_event_type(None) is None
    assert validate_event_type("update") == "update"


def test_data_limits() -> None:
    assert validate_data("x" * 10, max_bytes=10) == "x" * 10
    with pytest.raises(PayloadTooLarge):
        validate_data("x" * 11, max_bytes=10)
    with pytest.raises(PayloadTooLarge):
        validate_data("é" * 6, max_bytes=10)  # 12 bytes of UTF-8
    with pytest.raises(InvalidInput):
        validate_data("a\x00b", max_bytes=10)


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("orders", "orders", True),
        ("orders", "orders/1", False),
        ("orders/*", "orders/1", True),
        ("orders/*", "orders/eu/2", True),
        ("orders/*", "orders", False),
        ("orders/*", "orders/", False),
        ("orders/*", "ordersx/1", False),
        ("*", "anything/at/all", True),
        ("*", "x", True),
        ("a/b/*", "a/b/c/d", True),
        ("a/b/*", "a/bc", False),
    ],
)
def test_pattern_matching(pattern: str, topic: str, matches: bool) -> None:
    assert TopicPattern(pattern).matches(topic) is matches


def test_parse_patterns() -> None:
    assert [p.text for p in parse_patterns(["a", "b/*", "a"], max_count=5)] == ["a", "b/*"]
    with pytest.raises(MalformedRequest):
        parse_patterns([], max_count=5)
    with pytest.raises(InvalidInput):
        parse_patterns(["a", "b", "c"], max_count=2)
    with pytest.raises(InvalidInput):
        parse_patterns(["bad\ntopic"], max_count=5)


COVERS: list[tuple[str, str, bool]] = [
    # (granted, requested, covered)
    ("orders/1", "orders/1", True),
    ("orders/1", "orders/2", False),
    ("orders/*", "orders/1", True),
    ("orders/*", "orders/eu/2", True),
    ("orders/*", "orders", False),
    ("orders/*", "ordersx/1", False),
    ("*", "anything/at/all", True),
    ("*", "orders/*", True),
    ("*", "*", True),
    ("orders/*", "orders/*", True),
    ("orders/*", "orders/eu/*", True),
    ("orders/eu/*", "orders/*", False),
    ("orders/*", "*", False),
    ("orders", "orders/*", False),
    ("orders/1", "*", False),
    ("orders/*", "orders-archive/*", False),
    ("a/*", "a/*/b", True),  # an exact topic that happens to contain '*'
]


@pytest.mark.parametrize(("granted", "requested", "covered"), COVERS)
def test_granted_pattern_covers_requested(granted: str, requested: str, covered: bool) -> None:
    assert covers(TopicPattern(granted), TopicPattern(requested)) is covered


def test_every_requested_pattern_must_be_covered() -> None:
    granted = (TopicPattern("news"), TopicPattern("orders/*"))
    ok = (TopicPattern("news"), TopicPattern("orders/eu/*"), TopicPattern("orders/1"))
    assert first_uncovered(granted, ok) is None
    wanted = (TopicPattern("news"), TopicPattern("sport"), TopicPattern("weather"))
    assert first_uncovered(granted, wanted) == TopicPattern("sport")
    assert first_uncovered((), (TopicPattern("news"),)) == TopicPattern("news")


def test_streams_on_the_same_topics_share_their_patterns() -> None:
    first = parse_patterns(["orders/*", "news"], max_count=64)
    assert parse_patterns(["orders/*", "news", "news"], max_count=64) is first
    assert parse_patterns(["news", "orders/*"], max_count=64) is not first  # order is kept
    many = [f"t{i}" for i in range(9)]
    assert parse_patterns(many, max_count=64) == parse_patterns(many, max_count=64)
    assert parse_patterns(many, max_count=64) is not parse_patterns(many, max_count=64)
    for _ in range(2):  # a refusal is never remembered as an answer
        with pytest.raises(InvalidInput):
            parse_patterns(["ok", "bad\ntopic"], max_count=64)
