from __future__ import annotations

import pytest

from sse_hub.errors import MalformedRequest
from sse_hub.replay import (
    HISTORY_TRUNCATED,
    UNKNOWN_ID,
    Reset,
    Resume,
    check_position,
    parse_resume,
)


def test_no_resume_means_live_only() -> None:
    assert parse_resume(None, []) is None
    assert parse_resume("", [""]) is None


def test_header_wins_over_query() -> None:
    assert parse_resume("7", ["3"]) == Resume(after=7)


def test_query_used_without_header() -> None:
    assert parse_resume(None, ["3"]) == Resume(after=3)


def test_earliest() -> None:
    assert parse_resume("earliest", []) == Resume(after=0, from_earliest=True)
    assert parse_resume(None, ["earliest"]) == Resume(after=0, from_earliest=True)


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "1e3", "0x10", "9" * 20, "Earliest", "1 2"])
def test_malformed_ids(bad: str) -> None:
    with pytest.raises(MalformedRequest):
        parse_resume(bad, [])
    with pytest.raises(MalformedRequest):
        parse_resume(None, [bad])


def test_zero_is_a_valid_id() -> None:
    assert parse_resume("0", []) == Resume(after=0)


@pytest.mark.parametrize(
    ("position", "oldest", "head", "expected"),
    [
        (10, 5, 20, None),  # inside retention
        (4, 5, 20, None),  # exactly at the edge: 5 is the next one
        (3, 5, 20, Reset(HISTORY_TRUNCATED, 5, 4)),
        (0, 5, 20, Reset(HISTORY_TRUNCATED, 5, 4)),
        (0, 1, 20, None),
        (0, None, 0, None),  # empty database
        (20, None, 20, None),  # all pruned, client is current
        (10, None, 20, Reset(HISTORY_TRUNCATED, 21, 20)),  # all pruned, client behind
        (25, 5, 20, Reset(UNKNOWN_ID, 5, 4)),  # id never issued here
        (20, 5, 20, None),
    ],
)
def test_check_position(
    position: int, oldest: int | None, head: int, expected: Reset | None
) -> None:
    assert check_position(position, oldest, head) == expected
