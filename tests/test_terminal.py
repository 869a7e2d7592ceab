from __future__ import annotations

import json

from sse_hub import frames
from sse_hub.terminal import render_json, render_text


def parse(data: bytes) -> frames.ParsedFrame:
    (frame,) = frames.FrameParser().feed(data)
    return frame


def test_text_plain_and_coloured() -> None:
    frame = parse(frames.event_frame(12, "order.paid", "line one\nline two"))
    assert render_text(frame, colour=False) == "12 (order.paid) line one\n    line two"
    coloured = render_text(frame, colour=True)
    assert "\x1b[1m12\x1b[0m" in coloured
    assert "\x1b[36m(order.paid)\x1b[0m" in coloured


def test_text_without_type() -> None:
    assert render_text(parse(frames.event_frame(3, None, "hi")), colour=False) == "3 hi"


def test_json_lines() -> None:
    frame = parse(frames.event_frame(7, None, '{"a":1}'))
    assert json.loads(render_json(frame)) == {"id": 7, "event": None, "data": '{"a":1}'}


def test_reset_rendering() -> None:
    frame = parse(frames.reset_frame("history-truncated", 5))
    assert render_text(frame, colour=False).startswith("-- reset: ")
    assert json.loads(render_json(frame)) == {
        "reset": {"reason": "history-truncated", "oldest_id": 5}
    }
