from __future__ import annotations

import json

import pytest

from sse_hub import frames


def test_event_frame_exact_bytes() -> None:
    assert frames.event_frame(7, None, "hello") == b"id: 7\ndata: hello\n\n"


def test_event_frame_with_type() -> None:
    assert frames.event_frame(8, "greeting", "hi") == b"id: 8\nevent: greeting\ndata: hi\n\n"
    assert frames.event_frame(9, "t", "a\rb") == b"id: 9\nevent: t\ndata: a\ndata: b\n\n"
    assert frames.event_frame(None, "t", "x") == b"event: t\ndata: x\n\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("a\nb", b"data: a\ndata: b\n"),
        ("a\r\nb", b"data: a\ndata: b\n"),
        ("a\rb", b"data: a\ndata: b\n"),
        ("a\r\n\r\nb", b"data: a\ndata: \ndata: b\n"),
        ("", b"data: \n"),
        ("trailing\n", b"data: trailing\ndata: \n"),
        ("\n", b"data: \ndata: \n"),
        ("x\x0by\x0cz\u2028w", "data: x\x0by\x0cz\u2028w\n".encode()),
    ],
)
def test_data_lines_split_only_on_cr_lf_crlf(data: str, expected: bytes) -> None:
    assert frames.event_frame(1, None, data) == b"id: 1\n" + expected + b"\n"


def test_data_cannot_inject_fields() -> None:
    frame = frames.event_frame(1, None, "x\n\nid: 999\nevent: evil\ndata: pwned")
    parsed = frames.FrameParser().feed(frame)
    assert len(parsed) == 1
    assert parsed[0].id == "1"
    assert parsed[0].event is None
    assert parsed[0].data == "x\n\nid: 999\nevent: evil\ndata: pwned"


def test_unicode_data_is_utf8() -> None:
    assert frames.event_frame(2, None, "héllo ☃") == "id: 2\ndata: héllo ☃\n\n".encode()


def test_retry_and_comments_are_lines_without_a_blank_line() -> None:
    assert frames.retry_line(3000) == b"retry: 3000\n"
    assert frames.comment_line("heartbeat") == b": heartbeat\n"
    assert frames.comment_line() == b":\n"
    with pytest.raises(ValueError, match="single line"):
        frames.comment_line("a\nb")


def test_reset_frame_has_no_id_and_json_data() -> None:
    frame = frames.reset_frame("history-truncated", 42)
    assert frame.startswith(b"event: sse-hub.reset\ndata: ")
    assert b"id:" not in frame
    (parsed,) = frames.FrameParser().feed(frame)
    assert parsed.data is not None
    assert json.loads(parsed.data) == {"reason": "history-truncated", "oldest_id": 42}


def test_parser_round_trips_across_arbitrary_chunking() -> None:
    stream = (
        frames.retry_line(1500)
        + frames.event_frame(1, "t", "a\r\nb")
        + frames.comment_line("hb")
        + frames.event_frame(2, None, "ünï\rcode")
    )
    for size in (1, 2, 3, 7, len(stream)):
        parser = frames.FrameParser()
        got = []
        for start in range(0, len(stream), size):
            got.extend(parser.feed(stream[start : start + size]))
        # Lines without a blank line of their own join the next event's block.
        assert [(f.id, f.event, f.data, f.retry) for f in got] == [
            ("1", "t", "a\nb", 1500),
            ("2", None, "ünï\ncode", None),
        ]
        assert got[1].comments == ["hb"]
        assert parser.retry == 1500
