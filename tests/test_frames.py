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
        assert parser.retry == 1500
        assert parser.pending_bytes == 0


def _parse(*chunks: bytes) -> list[tuple[str | None, str | None, str | None]]:
    """The events (frames with data) of a stream fed in these chunks."""
    parser = frames.FrameParser()
    frames_read = [frame for chunk in chunks for frame in parser.feed(chunk)]
    return [(f.id, f.event, f.data) for f in frames_read if f.data is not None]


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n"])
def test_parser_takes_each_line_ending(newline: bytes) -> None:
    stream = b"id: 1|data: a|data: b||id: 2|data: c||".replace(b"|", newline)
    assert _parse(stream) == [("1", None, "a\nb"), ("2", None, "c")]
    for size in (1, 2, 3):  # a CRLF split across chunks is still one line end
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert _parse(*chunks) == [("1", None, "a\nb"), ("2", None, "c")]


def test_a_cr_that_ends_a_chunk_ends_the_frame_at_once() -> None:
    # A stream using CR alone: the blank line is complete when its CR arrives.
    assert _parse(b"id: 1\rdata: x\r\r") == [("1", None, "x")]
    parser = frames.FrameParser()
    assert parser.feed(b"data: x\r") == []
    # That LF ends no line of its own (it was a CRLF), else "x" would be a frame alone.
    assert [f.data for f in parser.feed(b"\ndata: y\r\r")] == ["x\ny"]


def test_one_leading_space_is_stripped_and_no_more() -> None:
    assert _parse(b"data:none\n\ndata: one\n\ndata:  two\n\ndata:\tt\n\n") == [
        (None, None, "none"),
        (None, None, "one"),
        (None, None, " two"),
        (None, None, "\tt"),
    ]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": hello\n:\nfoo: bar\nid: 3\n: between\ndata: x\nDATA: y\n\n: alone\n\n"
    assert _parse(stream) == [("3", None, "x")]


def test_a_field_without_colon_has_an_empty_value() -> None:
    assert _parse(b"data\n\ndata\ndata\n\nevent\ndata: z\n\n") == [
        (None, None, ""),
        (None, None, "\n"),
        (None, "", "z"),
    ]


def test_a_block_without_data_is_no_event() -> None:
    parser = frames.FrameParser()
    (frame,) = parser.feed(b"id: 4\nevent: e\nretry: 10\n\n")
    assert frame.data is None
    assert parser.retry == 10


def test_retry_takes_ascii_digits_only() -> None:
    parser = frames.FrameParser()
    parser.feed("retry: 12\nretry: \u00b2\nretry: \u0663\nretry: 1.5\nretry:\n".encode())
    assert parser.retry == 12


def test_an_id_with_nul_is_ignored() -> None:
    assert _parse(b"id: 5\nid: a\x00b\ndata: x\n\n") == [("5", None, "x")]


def test_bom_first_is_dropped_and_invalid_utf8_replaced() -> None:
    # Only the stream's first BOM goes; a later one makes an unknown field name.
    assert _parse(b"\xef\xbb", b"\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n") == [(None, None, "a")]
    assert _parse(b"data: \xff\xfe ok \xe2\x98\n\n") == [(None, None, "\ufffd\ufffd ok \ufffd")]
    assert _parse(
        "data: h\u00e9llo \u2603\n\n".encode()[:9], "data: h\u00e9llo \u2603\n\n".encode()[9:]
    ) == [(None, None, "h\u00e9llo \u2603")]


def test_pending_bytes_is_the_frame_being_read() -> None:
    parser = frames.FrameParser()
    parser.feed(b"id: 1\ndata: abc\ndata: de\ndata: par")
    assert parser.pending_bytes == len(b"abc\nde\n") + len(b"data: par")
    parser.feed(b"tial\n\n")
    assert parser.pending_bytes == 0
