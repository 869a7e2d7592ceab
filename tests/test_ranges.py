from __future__ import annotations

import pytest

from sse_hub.errors import RangeNotSatisfiable
from sse_hub.ranges import (
    entity_tag,
    http_date,
    if_range_holds,
    none_match,
    not_modified,
    parse_http_date,
    parse_range,
)

SIZE = 10_000
HUGE = "9" * 5000  # longer than int() accepts by default


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", SIZE, (0, 0)),
        ("bytes=0-9999", SIZE, (0, 9999)),
        ("bytes=0-", SIZE, (0, 9999)),
        ("bytes=9999-", SIZE, (9999, 9999)),
        ("bytes=100-199", SIZE, (100, 199)),
        ("bytes=5000-99999", SIZE, (5000, 9999)),  # last-pos past the end: to the end
        ("bytes=5000-" + HUGE, SIZE, (5000, 9999)),
        ("bytes=-1", SIZE, (9999, 9999)),
        ("bytes=-500", SIZE, (9500, 9999)),
        ("bytes=-10000", SIZE, (0, 9999)),
        ("bytes=-10001", SIZE, (0, 9999)),  # a suffix longer than the file: all of it
        ("bytes=-" + HUGE, SIZE, (0, 9999)),
        ("bytes=0007-0009", SIZE, (7, 9)),  # leading zeros are still decimal
        ("BYTES=1-2", SIZE, (1, 2)),  # the unit is case-insensitive
        ("Bytes=1-2", SIZE, (1, 2)),
        ("bytes= 1-2", SIZE, (1, 2)),  # optional whitespace around list elements
        ("bytes=1-2 ", SIZE, (1, 2)),
        ("bytes=1-2,", SIZE, (1, 2)),  # empty list elements are ignored
        ("bytes=,1-2", SIZE, (1, 2)),
        ("bytes=, ,1-2, ", SIZE, (1, 2)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=-1", 1, (0, 0)),
        # Whole file with 200: absent, malformed, other units, several ranges.
        (None, SIZE, None),
        ("", SIZE, None),
        ("bytes", SIZE, None),
        ("bytes=", SIZE, None),
        ("bytes=,", SIZE, None),
        ("bytes=-", SIZE, None),
        ("bytes=a-b", SIZE, None),
        ("bytes=1-a", SIZE, None),
        ("bytes=+1-2", SIZE, None),
        ("bytes=-1-2", SIZE, None),
        ("bytes=1--2", SIZE, None),
        ("bytes=1 - 2", SIZE, None),
        ("bytes=1-2-3", SIZE, None),
        ("bytes=0x10-0x20", SIZE, None),
        ("bytes=1.5-2", SIZE, None),
        ("bytes=²-3", SIZE, None),  # a Unicode digit is not a DIGIT
        ("bytes=5-4", SIZE, None),  # last < first: an invalid range-spec
        ("bytes =1-2", SIZE, None),
        ("bytes=1-2;q=1", SIZE, None),
        ("items=0-5", SIZE, None),
        ("none", SIZE, None),
        ("bytes=0-1,5-6", SIZE, None),  # multi-range: served whole
        ("bytes=0-1, 0-1", SIZE, None),
        ("bytes=0-1,x", SIZE, None),
        ("bytes=0-1,99999-", SIZE, None),
        ("bytes=0-1, bytes=2-3", SIZE, None),  # two Range field lines joined
        ("bytes=-5", 0, None),  # the last bytes of an empty file: the whole (empty) file
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10000-", SIZE),
        ("bytes=10000-10005", SIZE),
        ("bytes=20000-30000", SIZE),
        ("bytes=" + HUGE + "-", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=-000", SIZE),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=1-", 1),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size
    assert info.value.status == 416


def test_entity_tag_is_strong_and_changes_with_each_input() -> None:
    tag = entity_tag(10, 1_700_000_000_123_456_789, 42)
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert not tag.startswith("W/")
    variants = {
        tag,
        entity_tag(11, 1_700_000_000_123_456_789, 42),
        entity_tag(10, 1_700_000_000_123_456_790, 42),
        entity_tag(10, 1_700_000_000_123_456_789, 43),
    }
    assert len(variants) == 4
    assert entity_tag(10, 1_700_000_000_123_456_789, 42) == tag


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime, read as UTC
        "  Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_parse_http_date_forms(text: str) -> None:
    assert parse_http_date(text) == 784111777


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "0",
        "784111777",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 1:2:3 GMT",
    ],
)
def test_parse_http_date_rejects(text: str) -> None:
    assert parse_http_date(text) is None


def test_http_date_round_trip() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(http_date(1_700_000_000)) == 1_700_000_000


ETAG = '"a-b-c"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"a-b-c"', True),
        ("*", True),
        (" * ", True),
        ('W/"a-b-c"', True),  # If-None-Match uses the weak comparison
        ('"x", "a-b-c"', True),
        ('"x","a-b-c"', True),
        ('"x" ,\t"a-b-c" ,', True),
        ('"x,y", "a-b-c"', True),  # a comma inside a tag is part of the tag
        ('"x"', False),
        ('"a-b-c', False),  # unterminated: malformed, matches nothing
        ("a-b-c", False),  # unquoted
        ('"x", a-b-c', False),
        ('w/"a-b-c"', False),  # the weakness prefix is case-sensitive
        ('"A-B-C"', False),
        ("", False),
        ('*, "a-b-c"', False),  # "*" only on its own
    ],
)
def test_none_match(header: str, matches: bool) -> None:
    assert none_match(header, ETAG) is matches


LAST_MODIFIED_S = 1_700_000_000
LAST_MODIFIED = http_date(LAST_MODIFIED_S)
EARLIER = http_date(LAST_MODIFIED_S - 1)
LATER = http_date(LAST_MODIFIED_S + 3600)


@pytest.mark.parametrize(
    ("if_none_match", "if_modified_since", "expected"),
    [
        (None, None, False),
        (ETAG, None, True),
        ('"other"', None, False),
        (None, LAST_MODIFIED, True),
        (None, LATER, True),
        (None, EARLIER, False),
        (None, "not a date", False),  # an invalid date is ignored
        (None, f"{LAST_MODIFIED}, {LATER}", False),  # two dates: ignored
        # If-None-Match decides when present; If-Modified-Since is then ignored.
        ('"other"', LAST_MODIFIED, False),
        (ETAG, EARLIER, True),
        ("*", EARLIER, True),
    ],
)
def test_not_modified(
    if_none_match: str | None, if_modified_since: str | None, expected: bool
) -> None:
    assert not_modified(if_none_match, if_modified_since, ETAG, LAST_MODIFIED_S) is expected


NOW_S = LAST_MODIFIED_S + 60.0


@pytest.mark.parametrize(
    ("header", "now_s", "holds"),
    [
        (None, NOW_S, True),
        (ETAG, NOW_S, True),
        (f" {ETAG} ", NOW_S, True),
        ('"other"', NOW_S, False),
        (f"W/{ETAG}", NOW_S, False),  # If-Range needs the strong comparison
        (f"{ETAG}, {ETAG}", NOW_S, False),  # a list is not one validator
        ("*", NOW_S, False),
        ('"a-b-c', NOW_S, False),
        (LAST_MODIFIED, NOW_S, True),
        ("Tuesday, 14-Nov-23 22:13:20 GMT", NOW_S, True),  # the same instant, RFC 850 form
        (EARLIER, NOW_S, False),
        (LATER, NOW_S, False),  # only an exact match counts
        ("garbage", NOW_S, False),
        ("", NOW_S, False),
        # Modified within the last second: Last-Modified is a weak validator then.
        (LAST_MODIFIED, LAST_MODIFIED_S + 0.5, False),
        (LAST_MODIFIED, LAST_MODIFIED_S + 1.0, True),
        (ETAG, LAST_MODIFIED_S + 0.5, True),
    ],
)
def test_if_range(header: str | None, now_s: float, holds: bool) -> None:
    assert if_range_holds(header, ETAG, LAST_MODIFIED_S, now_s) is holds
