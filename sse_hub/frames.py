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

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import NamedTuple

RESET_EVENT = "sse-hub.reset"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class Encoded(NamedTuple):
    """One event ready for the wire: its SSE frame, encoded once for every subscriber."""

    id: int
    topic: str
    frame: bytes


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
    comments: list[str] = field(default_factory=list)


class FrameParser:
    """Incremental ``text/event-stream`` reader (for ``sse-hub tail`` and the tests).

    Follows the WHATWG parsing rules: lines end at CRLF, CR or LF, a field's value
    loses one leading space, ``data`` lines join with LF, a blank line ends a frame.
    ``retry`` is the last reconnection delay read, set when its line is parsed
    (as a browser sets it), whether or not a blank line followed.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._current = ParsedFrame()
        self._data: list[str] = []
        self._started = False
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[ParsedFrame]:
        self._buffer += self._decoder.decode(chunk)
        done: list[ParsedFrame] = []
        while True:
            match = _LINE_BREAK.search(self._buffer)
            if match is None:
                break
            if match.group() == "\r" and match.end() == len(self._buffer):
                break  # maybe the first half of CRLF
            line, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
            frame = self._line(line)
            if frame is not None:
                done.append(frame)
        return done

    def _line(self, line: str) -> ParsedFrame | None:
        if line == "":
            if not self._started:
                return None
            frame = self._current
            frame.data = "\n".join(self._data) if self._data else None
            self._current, self._data, self._started = ParsedFrame(), [], False
            return frame
        self._started = True
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            self._current.comments.append(value)
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._current.id = value
        elif name == "event":
            self._current.event = value
        elif name == "retry" and value.isdigit():
            self._current.retry = self.retry = int(value)
        return None
