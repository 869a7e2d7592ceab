"""The exact bytes of ``text/event-stream`` frames (WHATWG HTML, "Server-sent events").

Pure functions from values to bytes. An event is encoded once and the same bytes
object is handed to every subscriber. Topics and event types were validated at
the edge, so only ``data`` needs line splitting here: the spec ends a line at
CRLF, CR or LF, so all three split data into separate ``data:`` lines and no
payload can start a field of its own.

Only events end with a blank line. The opening ``retry:`` field and heartbeat
comments are single lines: the spec dispatches nothing for a block without
``data``, but ``@microsoft/fetch-event-source`` and Python's ``httpx-sse``
dispatch an empty message for every blank line, so ``retry: 3000\n\n`` or
``: heartbeat\n\n`` would reach their handlers as phantom events. A line on its
own is still read at once (``retry:`` sets the reconnection delay when its line
is parsed) and still keeps proxies from timing the stream out; it simply
becomes part of the next event's block, where every parser ignores it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import NamedTuple

RESET_EVENT = "sse-hub.reset"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_CR = ord("\r")
_LF = ord("\n")
_BOM = b"\xef\xbb\xbf"


class Encoded(NamedTuple):
    """One event ready for the wire: its SSE frame, encoded once for every subscriber."""

    id: int
    topic: str
    frame: bytes
    # When the event was created, in seconds since the epoch (the database's
    # created_at, or the commit time for events sent at commit). It decides
    # whether a resume may be served from memory; 0.0 (unknown) never is.
    created_s: float = 0.0


def retry_line(retry_ms: int) -> bytes:
    """The reconnection delay, as a line of its own (no event: see the module docstring)."""
    return b"retry: %d\n" % retry_ms


def comment_line(text: str = "") -> bytes:
    """A comment line (heartbeats), which no client turns into an event."""
    if _LINE_BREAK.search(text):
        raise ValueError("a comment must be a single line")
    return b": " + text.encode("utf-8") + b"\n" if text else b":\n"


def event_frame(event_id: int | None, event: str | None, data: str) -> bytes:
    if event_id is not None and "\n" not in data and "\r" not in data:
        # Most events are one line (JSON): one format, no split (5x faster).
        if event is None:
            return f"id: {event_id}\ndata: {data}\n\n".encode()
        return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()
    parts: list[str] = []
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def reset_frame(reason: str, oldest_id: int) -> bytes:
    """Tells a resuming client that part of what it asked for is gone.

    It carries no ``id:`` so the browser keeps the id it resumed from.
    """
    payload = json.dumps({"reason": reason, "oldest_id": oldest_id}, separators=(", ", ": "))
    return event_frame(None, RESET_EVENT, payload)


@dataclass
class ParsedFrame:
    """One blank-line-terminated block of a stream, as a client reads it."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None


class FrameParser:
    """Incremental ``text/event-stream`` reader (the Python client, ``sse-hub tail``, the tests).

    Follows the WHATWG parsing rules: UTF-8 with one leading BOM dropped and
    invalid bytes replaced, lines end at CRLF, CR or LF, a comment line is
    ignored, a field's value loses one leading space, ``data`` lines join with
    LF, an ``id`` holding NUL is ignored, ``retry`` takes ASCII digits only, a
    blank line ends a frame. ``retry`` is the last reconnection delay read, set
    when its line is parsed (as a browser sets it), whether or not a blank line
    followed. A CR that ends a chunk ends its line at once (a LF that starts the
    next chunk then belongs to it), so a stream using CR alone is never late.

    The input is kept as bytes until a frame is complete, so ``pending_bytes``
    is exactly what a reader holds for the frame being read.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # an unfinished line
        self._skip_lf = False  # the last line ended with a CR that ended its chunk
        self._first_line = True
        self._current = ParsedFrame()
        self._data: list[bytes] = []
        self._data_bytes = 0
        self._started = False
        self.retry: int | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes held for the frame being read: its data lines so far and its unfinished line."""
        return len(self._buffer) + self._data_bytes

    def feed(self, chunk: bytes) -> list[ParsedFrame]:
        if not chunk:
            return []
        buffer = self._buffer
        scan_from = len(buffer)  # what was kept holds no line break
        buffer += chunk
        start = 0
        if self._skip_lf:
            self._skip_lf = False
            if buffer[0] == _LF:
                start = scan_from = 1
        done: list[ParsedFrame] = []
        while True:
            match = _LINE_BREAK_BYTES.search(buffer, scan_from)
            if match is None:
                break
            line = bytes(buffer[start : match.start()])
            start = scan_from = match.end()
            if start == len(buffer) and buffer[start - 1] == _CR:
                self._skip_lf = True  # maybe the first half of a CRLF
            frame = self._line(line)
            if frame is not None:
                done.append(frame)
        del buffer[:start]
        return done

    def _line(self, line: bytes) -> ParsedFrame | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if line == b"":
            if not self._started:
                return None
            frame = self._current
            if self._data:
                frame.data = b"\n".join(self._data).decode("utf-8", "replace")
            self._current, self._data, self._data_bytes = ParsedFrame(), [], 0
            self._started = False
            return frame
        self._started = True
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            self._data.append(value)
            self._data_bytes += len(value) + 1
        elif name == b"id":
            if b"\0" not in value:
                self._current.id = value.decode("utf-8", "replace")
        elif name == b"event":
            self._current.event = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            self._current.retry = self.retry = int(value)
        # Anything else, comments (an empty name) included, is ignored.
        return None
