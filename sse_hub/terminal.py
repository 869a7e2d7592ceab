"""How ``sse-hub tail`` prints events: readable lines (coloured on a terminal) or JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable

from sse_hub.frames import RESET_EVENT, FrameParser, ParsedFrame

_BOLD = "\x1b[1m"
_CYAN = "\x1b[36m"
_YELLOW = "\x1b[33m"
_RESET = "\x1b[0m"


def _paint(text: str, style: str, colour: bool) -> str:
    return f"{style}{text}{_RESET}" if colour else text


def render_text(frame: ParsedFrame, *, colour: bool) -> str:
    """``12 (order.paid) {"id": 1}``; multi-line data continues on indented lines."""
    if frame.event == RESET_EVENT:
        return _paint(f"-- reset: {frame.data}", _YELLOW, colour)
    head = _paint(str(frame.id), _BOLD, colour)
    if frame.event:
        head += " " + _paint(f"({frame.event})", _CYAN, colour)
    data = (frame.data or "").replace("\n", "\n    ")
    return f"{head} {data}"


def render_json(frame: ParsedFrame) -> str:
    """One JSON object per line: ``{"id": 12, "event": null, "data": "..."}``."""
    if frame.event == RESET_EVENT:
        return json.dumps({"reset": json.loads(frame.data or "{}")}, ensure_ascii=False)
    event_id = int(frame.id) if frame.id and frame.id.isdigit() else frame.id
    return json.dumps(
        {"id": event_id, "event": frame.event, "data": frame.data}, ensure_ascii=False
    )


class TerminalSink:
    """``sse-hub tail``'s sink: frames are parsed and printed as they arrive.

    Printing is synchronous, so nothing is ever pending: a terminal that does
    not keep up slows the tail, not the hub it reads from.
    """

    def __init__(self, *, json_lines: bool, colour: bool, out: Callable[[str], None]) -> None:
        self._parser = FrameParser()
        self._json_lines = json_lines
        self._colour = colour
        self._out = out
        self.bytes_sent = 0

    def write(self, frames: bytes) -> None:
        self.bytes_sent += len(frames)
        for frame in self._parser.feed(frames):
            if frame.data is None:
                continue  # no event (a block of comments or fields only)
            if self._json_lines:
                self._out(render_json(frame))
            else:
                self._out(render_text(frame, colour=self._colour))

    def pending_bytes(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False
