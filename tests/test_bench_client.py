"""The bench's load client reads bytes correctly: counting, chunked framing, latency parsing.

Pure functions only, fed the same bytes split at every possible boundary. No
timing is asserted anywhere (benchmarks print figures; tests check logic).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench import tally
from bench.dialects import DIALECTS
from bench.plan import HIGHER, SCENARIOS_BY_NAME, Metric, RunResult
from bench.report import (
    figure,
    goals,
    goals_markdown,
    markdown,
    results_page,
    run_description,
    summarise,
)
from bench.run import complete, parse_args
from bench.wire import (
    ChunkedDecoder,
    EventCounter,
    FrameReader,
    LatencyParser,
    ResponseHead,
    WireError,
    event_data,
    percentile,
)

HUB_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def frames(count: int, first_id: int = 1, sent_ns: int = 1_000) -> list[bytes]:
    return [
        b"id: %d\ndata: %s\n\n" % (first_id + i, event_data(sent_ns + i, i, 40).encode())
        for i in range(count)
    ]


def chunked(pieces: list[bytes], *, final: bool = False) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return body + (b"0\r\n\r\n" if final else b"")


def splits(data: bytes, rng: random.Random, parts: int) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(parts, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_head_split_anywhere_then_body():
    data = HUB_HEAD + b"5\r\nretry\r\n"
    for cut in range(1, len(data)):
        head = ResponseHead()
        rest = head.feed(data[:cut])
        if not head.done:
            assert rest == b""
            rest = head.feed(data[cut:])
        else:
            rest += data[cut:]
        assert head.status == 200
        assert head.chunked
        assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert rest == b"5\r\nretry\r\n"


def test_head_content_length_and_garbage():
    head = ResponseHead()
    assert head.feed(b'HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{"id": 1}') == b'{"id": 1}'
    assert (head.status, head.content_length, head.chunked) == (201, 9, False)
    with pytest.raises(WireError):
        ResponseHead().feed(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_chunked_decoder_every_single_split():
    payload = [b"retry: 3000\n\n", *frames(3)]
    wire = chunked(payload, final=True)
    for cut in range(len(wire) + 1):
        decoder = ChunkedDecoder()
        out = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert out == b"".join(payload)
        assert decoder.finished


def test_chunked_decoder_byte_by_byte_with_extensions_and_trailers():
    wire = b"4;name=value\r\nabcd\r\n0\r\nX-Trailer: 1\r\n\r\n"
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert out == b"abcd"
    assert decoder.finished


def test_chunked_decoder_rejects_bad_sizes():
    with pytest.raises(WireError):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(WireError):
        ChunkedDecoder().feed(b"2\r\nabXY\r\n")


def test_counter_counts_each_event_once_across_random_reads():
    rng = random.Random(7)
    payload = b"retry: 3000\n\n: heartbeat\n\n" + b"".join(frames(200))
    for _ in range(50):
        counter = EventCounter()
        for piece in splits(payload, rng, rng.randrange(1, 400)):
            counter.feed(piece)
        assert counter.count == 200


def test_counter_through_chunked_framing_split_inside_tokens():
    rng = random.Random(11)
    wire = chunked(frames(100), final=False)
    for _ in range(30):
        decoder = ChunkedDecoder()
        counter = EventCounter()
        for piece in splits(wire, rng, rng.randrange(1, 600)):
            counter.feed(decoder.feed(piece))
        assert counter.count == 100


def test_counter_one_byte_reads_and_crlf_frames():
    # sse-starlette separates lines with CRLF; nchan writes raw with comments first.
    payload = b": hi\n\n" + b"".join(b"id: %d\r\ndata: x %d\r\n\r\n" % (i, i) for i in range(9))
    counter = EventCounter()
    for i in range(len(payload)):
        counter.feed(payload[i : i + 1])
    assert counter.count == 9


def test_latency_parser_reads_send_times_across_reads():
    rng = random.Random(3)
    payload = b"".join(frames(50, sent_ns=10_000))
    for _ in range(30):
        parser = LatencyParser()
        got: list[int] = []
        for piece in splits(payload, rng, rng.randrange(1, 300)):
            got.extend(parser.feed(piece, 20_000))
        assert got == [20_000 - (10_000 + i) for i in range(50)]


def test_latency_parser_ignores_data_without_a_timestamp():
    parser = LatencyParser()
    assert parser.feed(b"data: hello\n\ndata: 5 1 x\r\n\r\n", 12) == [7]


def test_frame_reader_ids_send_times_and_retry_across_random_reads():
    rng = random.Random(5)
    payload = (
        b"retry: 3000\n: heartbeat\n\n"
        + b"".join(frames(40, first_id=101, sent_ns=7_000))
        + b": heartbeat\n\nretry: 6421\n"
    )
    for _ in range(40):
        reader = FrameReader()
        got: list[tuple[int, int]] = []
        for piece in splits(payload, rng, rng.randrange(1, 500)):
            got.extend(reader.feed(piece))
        assert got == [(101 + i, 7_000 + i) for i in range(40)]
        assert reader.last_id == 140
        assert reader.retry_ms == 6421


def test_frame_reader_crlf_and_cr_line_ends_split_anywhere():
    payload = b"id: 7\r\ndata: 55 1 x\r\n\r\nid: 8\rdata: 56 2 y\r\r: c\r\n\r\n"
    for cut in range(len(payload) + 1):
        reader = FrameReader()
        got = reader.feed(payload[:cut]) + reader.feed(payload[cut:])
        assert got == [(7, 55), (8, 56)], cut


def test_frame_reader_id_persists_and_odd_events_are_marked():
    reader = FrameReader()
    # nchan's ids are time:tag, and its pings carry an event type but no data.
    got = reader.feed(b"id: 9\ndata: 1 a\n\ndata: no-time\n\nevent: ping\n\nid: 1:0\ndata: 2\n\n")
    assert got == [(9, 1), (9, 0), (-1, 2)]


def test_event_data_is_one_line_with_the_send_time_first():
    data = event_data(123456789, 42, 64)
    assert data.startswith("123456789 42 ")
    assert len(data) == 64
    assert "\n" not in data


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile([5], 0.99) == 5


def test_dialects_build_well_formed_requests():
    hub = DIALECTS["hub"]
    request = hub.publish("h:1", [("a", "1 2 x"), ("b", "3 4 y")])
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /events HTTP/1.1\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert body == b'[{"topic":"a","data":"1 2 x"},{"topic":"b","data":"3 4 y"}]'
    assert hub.first_id(b'{"ids": [7, 8]}') == 7
    assert b"Last-Event-ID: 41\r\n" in hub.resume("h:1", "t/1", 41)
    assert (
        DIALECTS["nchan"]
        .publish("h:1", [("t", "d")], retained=True)
        .startswith(b"POST /pubr?topic=t ")
    )
    assert DIALECTS["nchan"].subscribe("h:1", "a/b").startswith(b"GET /events?topic=a%2Fb ")


def test_report_medians_ratios_and_client_bound_flags():
    runs = [
        RunResult("fanout", "hub", i, {"delivered_per_s": v, "client_cpu_util": 0.2})
        for i, v in enumerate((100.0, 300.0, 200.0))
    ] + [
        RunResult("fanout", "nchan", 0, {"delivered_per_s": 400.0, "client_cpu_util": 0.95}),
        RunResult("fanout", "starlette", 0, error="boom"),
    ]
    metric = Metric("delivered_per_s", "delivered events/s", HIGHER)
    hub = figure(runs[:3], metric, check_client=True)
    assert hub is not None
    assert (hub.median, hub.low, hub.high, hub.client_bound) == (200.0, 100.0, 300.0, 0)
    summary = summarise(runs)
    nchan = summary["fanout"]["delivered_per_s"]["nchan"]
    assert nchan["client_bound_runs"] == 1
    assert "starlette" not in summary["fanout"]["delivered_per_s"]
    table = markdown(summary, repeats=3)
    assert "| fanout | delivered events/s | ↑ | 200 (100–300) | 400 † | n/a | 0.50 ✗ | – |" in table
    rows = {row["goal"]: row for row in goals(summary)}
    assert rows["fan-out delivered events/s ≥ nchan's"]["reached"] is False


def _fake_summary() -> dict[str, Any]:
    runs = [
        RunResult("fanout", target, 0, {"delivered_per_s": rate, "client_cpu_util": 0.5})
        for target, rate in (("hub", 120.0), ("nchan", 100.0), ("starlette", 30.0))
    ]
    return summarise(runs)


def test_results_page_names_commit_date_machine_and_holds_both_tables():
    summary = _fake_summary()
    table = markdown(summary, repeats=1)
    goals_md = goals_markdown(goals(summary))
    meta = {
        "commit": "abc1234",
        "date": "2026-12-02 14:00:00 UTC",
        "machine": "2 CPUs (AMD EPYC), Debian GNU/Linux 12 (bookworm), kernel 6.1.0",
        "command": "python -m bench.run",
        "quick": False,
        "repeats": 1,
        "pg": "durable",
        "hub_workers": 1,
        "nginx_workers": 1,
        "elapsed_s": 966.0,
        "versions": {"python": "3.11.7", "postgresql": "15.8"},
        "note": "nothing else ran",
    }
    page = results_page(meta, table, goals_md)
    assert page.startswith("# Benchmarks: the latest complete run\n")
    assert "- **Commit:** `abc1234`\n" in page
    assert "- **Date:** 2026-12-02 14:00:00 UTC\n" in page
    assert "- **Machine:** 2 CPUs (AMD EPYC), Debian GNU/Linux 12 (bookworm)" in page
    assert (
        "full, 1 repeat(s), PostgreSQL durable, hub --workers 1, nginx 1 worker, 16.1 min" in page
    )
    assert "- **Versions:** python 3.11.7, postgresql 15.8\n" in page
    assert "- **Note:** nothing else ran\n" in page
    assert f"## Figures\n\n{table}\n\n## Targets\n\n{goals_md}\n" in page
    assert "| fanout | delivered events/s | ↑ | 120 | 100 | 30 | 1.20 | 4.00 |" in page
    assert "- **Note:**" not in results_page({**meta, "note": None}, table, goals_md)


@pytest.mark.parametrize(
    ("argv", "targets", "interrupted", "recorded"),
    [
        ([], ["hub", "nchan", "starlette"], False, True),
        (["--repeat", "5", "--pg", "fast"], ["starlette", "hub", "nchan"], False, True),
        ([], ["hub", "starlette"], False, False),  # nchan missing on this machine
        (["--quick"], ["hub", "nchan", "starlette"], False, False),
        (["-s", "fanout"], ["hub", "nchan", "starlette"], False, False),
        ([], ["hub", "nchan", "starlette"], True, False),
    ],
)
def test_only_complete_runs_replace_the_committed_results(
    argv: list[str],
    targets: list[str],
    interrupted: bool,
    recorded: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BENCH_QUICK", "BENCH_SCENARIOS", "BENCH_TARGETS", "BENCH_REPEAT"):
        monkeypatch.delenv(name, raising=False)
    assert complete(parse_args(argv), targets, interrupted) is recorded


def test_shares_and_source_addresses():
    assert tally.shares(100_000, 8) == [12_500] * 8
    assert tally.shares(10, 4) == [3, 3, 2, 2]
    assert sum(tally.shares(99_999, 7)) == 99_999
    assert tally.source_addresses(0, 2) == ["127.0.1.1", "127.0.1.2"]
    assert tally.source_addresses(7)[-1] == f"127.0.8.{tally.SOURCES_PER_CLIENT}"
    with pytest.raises(ValueError, match="source addresses"):
        tally.source_addresses(254)
    with pytest.raises(ValueError, match="part"):
        tally.shares(10, 0)


def test_check_ids_counts_gaps_duplicates_and_strangers():
    published = frozenset(range(10, 20))
    assert tally.check_ids(range(10, 20), published) == tally.IdCheck(0, 0, 0)
    # a resume that skipped 13-14, repeated 16 twice, and an id from another topic
    received = [10, 11, 12, 15, 16, 16, 16, 17, 18, 19, 25]
    assert tally.check_ids(received, published) == tally.IdCheck(
        missed=2, duplicates=2, unexpected=1
    )
    assert tally.check_ids([], published) == tally.IdCheck(10, 0, 0)
    total = tally.IdCheck(1, 2, 3) + tally.IdCheck(4, 5, 6)
    assert total == tally.IdCheck(5, 7, 9)


def test_caught_up_is_when_the_head_at_reconnection_arrived():
    accepted_ids = [100, 101, 102, 103]
    accepted_ns = [1_000, 2_000, 3_000, 4_000]
    # ids before the drop, then a replay of 101-102 after it came back at 2_500
    ids = [99, 100, 101, 102, 103]
    at = [900, 1_100, 2_600, 2_700, 4_100]
    assert tally.caught_up_ns(ids, at, 2_500, accepted_ids, accepted_ns) == 2_600
    # back at 3_500: the head then was 102
    assert tally.caught_up_ns(ids, at, 3_500, accepted_ids, accepted_ns) == 3_500
    # back before anything was accepted: caught up at once
    assert tally.caught_up_ns(ids, at, 500, accepted_ids, accepted_ns) == 500
    # the head never came: never caught up
    assert tally.caught_up_ns([99, 100], [900, 1_100], 3_500, accepted_ids, accepted_ns) is None


def test_combine_adds_up_the_processes_answers():
    replies: list[dict[str, Any]] = [
        {"opened": 10, "ended_ns": 5, "started_ns": 2, "errors": ["a"], "reached_ns": None},
        {"opened": 7, "ended_ns": 9, "started_ns": 1, "errors": ["b", "c"], "reached_ns": 4},
        {"opened": 3, "ended_ns": 6, "started_ns": 3, "reached_ns": 8},
    ]
    merged = tally.combine(
        replies,
        sums=("opened",),
        maxima=("ended_ns", "reached_ns", "absent"),
        minima=("started_ns",),
        lists=("errors",),
        list_limit=2,
    )
    assert merged == {
        "opened": 20,
        "ended_ns": 9,
        "reached_ns": 8,
        "absent": None,
        "started_ns": 1,
        "errors": ["a", "b"],
    }
    # JSON turns the statuses' integer keys into strings: both add up under one key
    assert tally.add_counts([{503: 2, "TimeoutError": 1}, {"503": 1}, {}]) == {
        "503": 3,
        "TimeoutError": 1,
    }
    assert tally.seconds_between(1_000_000_000, 3_500_000_000) == 2.5
    assert tally.seconds_between(None, 5) is None


def test_scale_rows_show_missing_figures_as_na_and_run_once():
    hub = {"streams_connected": 100_000, "storm_missed": 0, "fanout_last_ms": 900.0}
    nchan = {"streams_connected": 100_000, "fanout_last_ms": 600.0}
    runs = [RunResult("scale", "hub", 0, hub), RunResult("scale", "nchan", 0, nchan)]
    table = markdown(summarise(runs), repeats=3)
    assert "| scale | streams connected | ↑ | 100,000 | 100,000 | n/a | 1.00 | – |" in table
    assert "stream: until the last has it (ms) | ↓ | 900 | 600 | n/a | 1.50 ✗ | – |" in table
    assert "|  | storm: events missed | ↓ | 0 | n/a | n/a | – | – |" in table
    scale = SCENARIOS_BY_NAME["scale"]
    assert scale.max_repeats == 1
    assert scale.params["streams"] == 100_000
    assert scale.params["workers"] == scale.params["clients"] == 8
    assert scale.params_for(quick=True)["streams"] == 10_000
    assert SCENARIOS_BY_NAME["scale-10k"].params["streams"] == 10_000

    meta = {
        "command": "python -m bench.run -s scale",
        "quick": False,
        "repeats": 3,
        "pg": "durable",
        "hub_workers": 1,
        "nginx_workers": 1,
        "elapsed_s": 300.0,
        "scale": {"scale": {"streams": 100_000, "workers": 8, "clients": 8}},
    }
    assert run_description(meta).endswith(
        "nginx 1 worker (scale: 100,000 streams, hub --workers 8, nginx 8 workers, "
        "8 client processes, 1 run), 5.0 minutes"
    )
