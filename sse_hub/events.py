"""Events, topics and topic patterns: what may be published and what a pattern matches.

Validation happens here, at the edge, and rejects rather than repairs: a topic or
event type with a control character would let one producer inject SSE fields into
other clients' streams, so it never gets past this module.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sse_hub.errors import InvalidInput, MalformedRequest, PayloadTooLarge

MAX_TOPIC_BYTES = 256
MAX_EVENT_TYPE_BYTES = 256
WILDCARD_ALL = "*"
WILDCARD_SUFFIX = "/*"

# C0 controls, DEL and the C1 controls: none of them belong in a topic or event type.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event on its way in: validated, not yet stored."""

    topic: str
    data: str
    event: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the store, with its final id."""

    id: int
    topic: str
    event: str | None
    data: str


def validate_topic(topic: object, *, what: str = "topic") -> str:
    if not isinstance(topic, str):
        raise InvalidInput(f"{what} must be a string")
    size = len(topic.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_TOPIC_BYTES:
        raise InvalidInput(f"{what} must be 1 to {MAX_TOPIC_BYTES} bytes of UTF-8, got {size}")
    if _CONTROL.search(topic):
        raise InvalidInput(f"{what} must not contain control characters")
    _require_utf8(topic, what)
    return topic


def validate_event_type(event: object) -> str | None:
    if event is None:
        return None
    if not isinstance(event, str):
        raise InvalidInput("event must be a string")
    size = len(event.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_EVENT_TYPE_BYTES:
        raise InvalidInput(f"event must be 1 to {MAX_EVENT_TYPE_BYTES} bytes of UTF-8")
    if _CONTROL.search(event):
        raise InvalidInput("event must not contain control characters")
    _require_utf8(event, "event")
    return event


def validate_data(data: str, *, max_bytes: int) -> str:
    if "\x00" in data:
        raise InvalidInput("data must not contain NUL characters")
    _require_utf8(data, "data")
    size = len(data.encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLarge(f"data is {size} bytes; the limit is {max_bytes} bytes")
    return data


def data_to_text(value: object) -> str:
    """Event data as sent on the wire: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def new_event(
    topic: object, data: object, event: object = None, *, max_data_bytes: int
) -> NewEvent:
    """Validate one event from any source (HTTP, CLI, Python)."""
    return NewEvent(
        topic=validate_topic(topic),
        data=validate_data(data_to_text(data), max_bytes=max_data_bytes),
        event=validate_event_type(event),
    )


def _require_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8") from None


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """One subscription value: an exact topic, ``prefix/*`` or ``*``."""

    text: str

    @property
    def is_all(self) -> bool:
        return self.text == WILDCARD_ALL

    @property
    def prefix(self) -> str | None:
        """``orders/`` for ``orders/*``; ``None`` for an exact topic or ``*``."""
        if self.text.endswith(WILDCARD_SUFFIX):
            return self.text[:-1]
        return None

    def matches(self, topic: str) -> bool:
        if self.is_all:
            return True
        prefix = self.prefix
        if prefix is not None:
            return topic.startswith(prefix) and len(topic) > len(prefix)
        return topic == self.text


def parse_patterns(values: list[str], *, max_count: int) -> tuple[TopicPattern, ...]:
    """Validate the ``topic=`` values of a subscription, dropping repeats."""
    if not values:
        raise MalformedRequest("at least one topic= is required")
    unique = list(dict.fromkeys(values))
    if len(unique) > max_count:
        raise InvalidInput(f"at most {max_count} topics per subscription, got {len(unique)}")
    if len(unique) <= _SHARED_MAX_TOPICS:
        return _shared_patterns(tuple(unique))
    return _patterns(unique)


# Streams that subscribe to the same topics (every dashboard on a page's feed)
# share one tuple of patterns instead of holding a copy each for their whole life.
_SHARED_MAX_TOPICS = 8
_SHARED_SUBSCRIPTIONS = 1024


def _patterns(values: Iterable[str]) -> tuple[TopicPattern, ...]:
    return tuple(TopicPattern(validate_topic(value)) for value in values)


@functools.lru_cache(maxsize=_SHARED_SUBSCRIPTIONS)
def _shared_patterns(values: tuple[str, ...]) -> tuple[TopicPattern, ...]:
    return _patterns(values)


def any_matches(patterns: tuple[TopicPattern, ...], topic: str) -> bool:
    return any(pattern.matches(topic) for pattern in patterns)


def covers(granted: TopicPattern, requested: TopicPattern) -> bool:
    """Whether a token's ``granted`` pattern allows subscribing to ``requested``.

    An exact topic is covered by any pattern that matches it; ``p/*`` by ``*``
    or by a ``q/*`` whose prefix ``p/`` starts with (``orders/*`` covers
    ``orders/eu/*``); ``*`` only by ``*``. An exact grant never covers a
    pattern, however few topics that pattern happens to match today.
    """
    if granted.is_all:
        return True
    if requested.is_all:
        return False
    wanted_prefix = requested.prefix
    if wanted_prefix is None:
        return granted.matches(requested.text)
    granted_prefix = granted.prefix
    return granted_prefix is not None and wanted_prefix.startswith(granted_prefix)


def first_uncovered(
    granted: tuple[TopicPattern, ...], requested: tuple[TopicPattern, ...]
) -> TopicPattern | None:
    """The first requested pattern no grant covers, or ``None`` when all are allowed."""
    for wanted in requested:
        if not any(covers(grant, wanted) for grant in granted):
            return wanted
    return None
