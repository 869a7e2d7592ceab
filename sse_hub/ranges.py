"""What a download request's ``Range`` and conditional headers mean, as pure functions.

Everything here works on header text and a file's size and times; nothing opens
a file or knows about aiohttp, so every decision is tested from a table. The
rules are those of RFC 9110: section 14 (ranges), 13 (conditional requests) and
8.8 (validators). Where the RFC lets a server choose, the choice is the one
nginx and Apache make, and the comment says so.
"""

from __future__ import annotations

import calendar
import re
from email.utils import formatdate, parsedate_tz

from sse_hub.errors import RangeNotSatisfiable

# A number longer than this is larger than any file can be; treating it as
# "infinite" keeps int() away from huge digit strings (and Python's 4300-digit cap).
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS

# RFC 9110 section 14.1.2: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length
_RANGE_SPEC = re.compile(r"(?P<first>[0-9]+)-(?P<last>[0-9]*)|-(?P<suffix>[0-9]+)")

# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, where etagc
# excludes DQUOTE, controls and space; a list of them is comma separated (#entity-tag).
_ENTITY_TAG = re.compile(r'[ \t]*(?P<weak>W/)?(?P<tag>"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range ``(first, last)``, both inclusive, that ``Range`` asks of ``size`` bytes.

    ``None`` means "send the whole file with 200": no header, another unit, a
    malformed header, or several ranges. RFC 9110 section 14.2 lets a server
    ignore a Range header it does not want to honour; multipart/byteranges buys
    download managers nothing they cannot get from single ranges.
    An unsatisfiable range raises ``RangeNotSatisfiable`` (416).
    """
    if header is None:
        return None
    unit, equals, range_set = header.partition("=")
    # Section 14.1: range units are case-insensitive; "bytes" is the only one we know.
    if not equals or unit.lower() != "bytes":
        return None
    # Section 5.6.1.2: a recipient ignores empty list elements ("bytes=0-9,").
    specs = [spec.strip(" \t") for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    if match["suffix"] is not None:
        # Section 14.1.3: a suffix range asks for the last N bytes; it is
        # satisfiable only when N > 0, and a longer N means the whole file.
        length = _number(match["suffix"])
        if length == 0:
            raise RangeNotSatisfiable("a suffix range of zero bytes selects nothing", size=size)
        if size == 0:
            return None  # "the last N bytes" of nothing: the whole (empty) file, 200
        return max(0, size - length), size - 1
    first = _number(match["first"])
    last = _number(match["last"]) if match["last"] else _HUGE
    if last < first:
        return None  # section 14.1.1: an invalid range-spec, so an invalid header; ignored
    # Section 14.1.1: an int-range is satisfiable only if first-pos < length.
    if first >= size:
        raise RangeNotSatisfiable(
            f"the range starts at byte {first} but the file has {size} bytes", size=size
        )
    # Section 14.1.2: a last-pos at or beyond the end means "to the end".
    return first, min(last, size - 1)


def entity_tag(size: int, mtime_ns: int, inode: int) -> str:
    """A strong ETag: changes whenever the file is rewritten, replaced or resized.

    Strong (section 8.8.3) because the same three values mean the same bytes for
    the files this serves: artefacts are written then left alone, and replacing
    one (rename over, rsync) gives a new inode even when size and mtime are kept.
    """
    return f'"{size:x}-{mtime_ns:x}-{inode:x}"'


def http_date(epoch_s: float) -> str:
    """IMF-fixdate (section 5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(epoch_s, usegmt=True)


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch, or ``None`` when ``text`` is not an HTTP-date.

    Section 5.6.7: recipients accept IMF-fixdate, the obsolete RFC 850 form and
    asctime; ``email.utils`` reads all three without depending on the locale.
    """
    text = text.strip(" \t")
    if text.count(",") > 1:
        return None  # a list of dates, not one date
    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    # HTTP-dates are always UTC; asctime carries no zone, and a missing zone
    # must not be read as the server's local time.
    try:
        return calendar.timegm(parsed[:6]) - (parsed[9] or 0)
    except (OverflowError, ValueError):
        return None


def _entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """``[(weak, opaque-tag), ...]`` of an entity-tag list, or ``None`` if malformed."""
    tags: list[tuple[bool, str]] = []
    position, end = 0, len(header)
    while position < end:
        if header[position] in " \t,":  # section 5.6.1.2: empty elements are ignored
            position += 1
            continue
        match = _ENTITY_TAG.match(header, position)
        if match is None:
            return None
        tags.append((match["weak"] is not None, match["tag"]))
        position = match.end()
    return tags


def _opaque(etag: str) -> str:
    return etag.removeprefix("W/")


def none_match(header: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names the current representation (then: 304).

    Section 13.1.2: ``*`` matches any current representation; otherwise the
    weak comparison of section 8.8.3.2 (``W/"x"`` matches ``"x"``). A malformed
    header matches nothing, so the client gets the full response.
    """
    if header.strip(" \t") == "*":
        return True
    tags = _entity_tags(header)
    return tags is not None and any(tag == _opaque(etag) for _weak, tag in tags)


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified_s: int
) -> bool:
    """Whether a GET or HEAD gets ``304 Not Modified`` (section 13.2.2, steps 3 and 4)."""
    if if_none_match is not None:
        # Step 3: If-None-Match decides, and If-Modified-Since is then ignored (13.1.3).
        return none_match(if_none_match, etag)
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        # Section 13.1.3: an invalid date is ignored; otherwise "not modified"
        # means the Last-Modified second is no later than the date given.
        return since is not None and last_modified_s <= since
    return False


def if_range_holds(header: str | None, etag: str, last_modified_s: int, now_s: float) -> bool:
    """Whether the ``Range`` may be honoured given ``If-Range`` (section 13.1.5).

    No header: yes. An entity tag must be a strong match (a weak tag never is).
    A date must equal Last-Modified, and Last-Modified must be a strong
    validator (section 8.8.2.2): the file has not changed within the last
    second, so a second write within the same second cannot hide behind it.
    Anything else is false, and the client gets the whole file with 200.
    """
    if header is None:
        return True
    text = header.strip(" \t")
    if text.startswith(('"', "W/")):
        tags = _entity_tags(text)
        if tags is None or len(tags) != 1:
            return False
        weak, tag = tags[0]
        return not weak and tag == etag  # our tags are strong (entity_tag)
    date = parse_http_date(text)
    return date is not None and date == last_modified_s and now_s >= last_modified_s + 1
