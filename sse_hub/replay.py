"""Where a resuming stream starts, and whether it owes the client a reset notice.

Pure decisions, no I/O. Ids are dense (the sequencer in ``store`` hands out
``last_id + 1, + 2, ...`` under a row lock), and retention deletes from the
oldest id upwards, so the retained history is always the id range
``[oldest, head]``. A client that resumes after id ``p`` missed something
exactly when ``p + 1 < oldest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sse_hub.errors import MalformedRequest

EARLIEST = "earliest"
HISTORY_TRUNCATED = "history-truncated"
UNKNOWN_ID = "unknown-id"

LAST_EVENT_ID_QUERY_KEYS = ("lastEventID", "last_event_id", "lastEventId")

_DIGITS = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Resume:
    """A client's resume request: replay every retained event with id > ``after``."""

    after: int
    from_earliest: bool = False


@dataclass(frozen=True, slots=True)
class Reset:
    """The stream must tell the client ``reason`` and continue after ``skip_to``."""

    reason: str
    oldest_id: int
    skip_to: int


def parse_resume(header: str | None, query_values: list[str]) -> Resume | None:
    """Read ``Last-Event-ID`` (which wins) or the ``lastEventID`` query value.

    Browsers keep the query string of their first connection and send the
    header on every reconnect, so the header is the fresher of the two.
    ``None`` means the client did not ask to resume: it gets live events only.
    """
    if header is not None and header.strip() != "":
        return _parse_id(header.strip())
    for value in query_values:
        if value.strip() != "":
            return _parse_id(value.strip())
    return None


def _parse_id(text: str) -> Resume:
    if text == EARLIEST:
        return Resume(after=0, from_earliest=True)
    if not _DIGITS.fullmatch(text) or int(text) > _MAX_ID:
        raise MalformedRequest(
            f"Last-Event-ID must be a non-negative integer or {EARLIEST!r}, got {text[:64]!r}"
        )
    return Resume(after=int(text))


def check_position(position: int, oldest: int | None, head: int) -> Reset | None:
    """Is a reset due for a stream that has everything up to ``position``?

    ``oldest`` is the smallest retained id (``None`` when nothing is retained)
    and ``head`` the largest id ever assigned. An id beyond the head was never
    handed out by this database (it was recreated, say): the client gets a
    reset and every retained event rather than silence until ids catch up.
    """
    first_retained = head + 1 if oldest is None else oldest
    if position > head:
        return Reset(UNKNOWN_ID, first_retained, first_retained - 1)
    if position + 1 < first_retained:
        return Reset(HISTORY_TRUNCATED, first_retained, first_retained - 1)
    return None
