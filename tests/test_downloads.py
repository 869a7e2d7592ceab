"""GET|HEAD /files/{path} end to end: a real hub on a real port, read byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from sse_hub.config import load_settings
from sse_hub.downloads import (
    SMALLEST_FILE_CHUNK_BYTES,
    content_disposition,
    content_type,
    next_chunk_bytes,
    path_parts,
)
from sse_hub.errors import ConfigError, NotFound
from sse_hub.ranges import entity_tag, http_date
from tests.conftest import HubFactory
from tests.raw_http import (
    close,
    exchange,
    get,
    open_fds,
    open_slow,
    read_exactly,
    read_to_end,
    rss_bytes,
    wait_until,
)

CHUNK = 4096  # the smallest --file-chunk, so a small file spans many chunks
DATA = random.Random(7).randbytes(3 * CHUNK + 123)
MTIME_S = 1_700_000_000
SECRET = b"SECRET-MARKER-5f0c1d"
UNICODE_NAME = "résumé ü.txt"


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    (root / "docs").mkdir(parents=True)
    (root / "data.bin").write_bytes(DATA)
    (root / "docs" / "readme.txt").write_bytes(b"hello\n")
    (root / "empty.bin").write_bytes(b"")
    (root / UNICODE_NAME).write_bytes(b"accents\n")
    (root / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    for path in root.rglob("*"):
        os.utime(path, (MTIME_S, MTIME_S))
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outside").symlink_to(tmp_path)
    (root / "alias.bin").symlink_to("data.bin")  # stays inside: served
    return root


@pytest.fixture
async def files_hub(start_hub: HubFactory, files_dir: Path) -> TestServer:
    return await start_hub(files_dir=files_dir, file_chunk_bytes=CHUNK)


def without_date(headers: CIMultiDict[str]) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in headers.items() if k.lower() != "date")


async def test_whole_file_and_its_headers(files_hub: TestServer, files_dir: Path) -> None:
    reply = await get(files_hub.port, "/files/data.bin")
    assert reply.status == 200
    assert reply.body == DATA
    info = (files_dir / "data.bin").stat()
    assert reply.headers["Content-Length"] == str(len(DATA))
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert reply.headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert reply.headers["ETag"] == entity_tag(len(DATA), info.st_mtime_ns, info.st_ino)
    assert reply.headers["Cache-Control"] == "no-cache"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Range" not in reply.headers
    assert "Content-Disposition" not in reply.headers
    assert "Transfer-Encoding" not in reply.headers

    nested = await get(files_hub.port, "/files/docs/readme.txt")
    assert (nested.status, nested.body) == (200, b"hello\n")
    assert nested.headers["Content-Type"] == "text/plain"
    archive = await get(files_hub.port, "/files/archive.tar.gz")
    assert archive.headers["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in archive.headers
    alias = await get(files_hub.port, "/files/alias.bin")
    assert (alias.status, alias.body) == (200, DATA)


N = len(DATA)
RANGES = [
    ("bytes=0-0", 0, 0),
    ("bytes=0-4095", 0, 4095),  # exactly one chunk
    ("bytes=4095-4096", 4095, 4096),  # across a chunk boundary
    ("bytes=1-8192", 1, 8192),  # starts and ends mid-chunk, spans three
    ("bytes=4096-8191", 4096, 8191),  # one aligned chunk
    ("bytes=100-", 100, N - 1),
    (f"bytes={N - 1}-", N - 1, N - 1),
    ("bytes=-1", N - 1, N - 1),
    ("bytes=-4097", N - 4097, N - 1),
    (f"bytes=-{N + 50}", 0, N - 1),  # a suffix longer than the file
    (f"bytes=8000-{N * 10}", 8000, N - 1),  # past the end: to the end
    ("bytes=0-", 0, N - 1),
]


async def test_every_range_form_exact_bytes(files_hub: TestServer) -> None:
    for header, first, last in RANGES:
        reply = await get(files_hub.port, "/files/data.bin", {"Range": header})
        assert reply.status == 206, header
        assert reply.headers["Content-Range"] == f"bytes {first}-{last}/{N}", header
        assert reply.headers["Content-Length"] == str(last - first + 1), header
        assert reply.body == DATA[first : last + 1], header


async def test_unsatisfiable_range_is_416(files_hub: TestServer) -> None:
    for target, header, size in [
        ("/files/data.bin", f"bytes={N}-", N),
        ("/files/data.bin", f"bytes={N + 5}-{N + 10}", N),
        ("/files/data.bin", "bytes=-0", N),
        ("/files/empty.bin", "bytes=0-", 0),
    ]:
        reply = await get(files_hub.port, target, {"Range": header})
        assert reply.status == 416, header
        assert reply.headers["Content-Range"] == f"bytes */{size}", header
        assert reply.headers["Content-Type"].startswith("application/problem+json")
        assert json.loads(reply.body)["status"] == 416


async def test_malformed_and_multi_ranges_get_the_whole_file(files_hub: TestServer) -> None:
    for header in ["bytes=0-1,5-6", "bytes=5-1", "bytes=a-", "items=0-1", "bytes=1-2-3", "bytes"]:
        reply = await get(files_hub.port, "/files/data.bin", {"Range": header})
        assert (reply.status, reply.body) == (200, DATA), header
        assert "Content-Range" not in reply.headers


async def test_head_sends_the_headers_of_get_and_no_body(files_hub: TestServer) -> None:
    port = files_hub.port
    etag = (await get(port, "/files/data.bin")).headers["ETag"]
    cases: list[tuple[str, dict[str, str]]] = [
        ("/files/data.bin", {}),
        ("/files/empty.bin", {}),
        ("/files/docs/readme.txt?download=1", {}),
        ("/files/data.bin", {"If-None-Match": etag}),
        ("/files/data.bin", {"If-None-Match": '"stale"'}),
        ("/files/data.bin", {"If-Modified-Since": http_date(MTIME_S)}),
    ]
    for target, headers in cases:
        got = await exchange(port, "GET", target, headers)
        head = await exchange(port, "HEAD", target, headers)
        assert head.status == got.status, target
        assert without_date(head.headers) == without_date(got.headers), (target, headers)
        assert head.body == b"", target
    # RFC 9110 section 14.2: range handling is defined for GET only; HEAD ignores Range.
    head = await exchange(port, "HEAD", "/files/data.bin", {"Range": "bytes=0-9"})
    assert head.status == 200
    assert head.headers["Content-Length"] == str(N)
    assert "Content-Range" not in head.headers
    assert head.body == b""


async def test_conditional_requests(files_hub: TestServer) -> None:
    port = files_hub.port
    full = await get(port, "/files/data.bin")
    etag, last_modified = full.headers["ETag"], full.headers["Last-Modified"]
    for headers in [
        {"If-None-Match": etag},
        {"If-None-Match": f"W/{etag}"},
        {"If-None-Match": f'"other", {etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": last_modified},
        {"If-Modified-Since": http_date(MTIME_S + 3600)},
        {"If-None-Match": etag, "If-Modified-Since": http_date(MTIME_S - 3600)},
    ]:
        reply = await get(port, "/files/data.bin", headers)
        assert reply.status == 304, headers
        assert reply.body == b"", headers
        assert reply.headers["ETag"] == etag
        assert reply.headers["Last-Modified"] == last_modified
        assert reply.headers["Cache-Control"] == "no-cache"
        assert "Content-Length" not in reply.headers
    for headers in [
        {"If-None-Match": '"other"'},
        {"If-Modified-Since": http_date(MTIME_S - 1)},
        {"If-Modified-Since": "not a date"},
        # If-None-Match decides; If-Modified-Since is ignored beside it.
        {"If-None-Match": '"other"', "If-Modified-Since": last_modified},
    ]:
        reply = await get(port, "/files/data.bin", headers)
        assert (reply.status, reply.body) == (200, DATA), headers


async def test_if_range(files_hub: TestServer) -> None:
    port = files_hub.port
    etag = (await get(port, "/files/data.bin")).headers["ETag"]
    for if_range in [etag, http_date(MTIME_S)]:
        reply = await get(port, "/files/data.bin", {"Range": "bytes=10-19", "If-Range": if_range})
        assert (reply.status, reply.body) == (206, DATA[10:20]), if_range
    for if_range in ['"stale"', f"W/{etag}", http_date(MTIME_S - 1), "garbage"]:
        reply = await get(port, "/files/data.bin", {"Range": "bytes=10-19", "If-Range": if_range})
        assert (reply.status, reply.body) == (200, DATA), if_range
        assert "Content-Range" not in reply.headers
    # A stale If-Range also wins over an unsatisfiable range: the whole file, not 416.
    reply = await get(port, "/files/data.bin", {"Range": f"bytes={N}-", "If-Range": '"stale"'})
    assert (reply.status, reply.body) == (200, DATA)


async def test_download_query_adds_content_disposition(files_hub: TestServer) -> None:
    port = files_hub.port
    reply = await get(port, "/files/docs/readme.txt?download=1")
    assert reply.headers["Content-Disposition"] == 'attachment; filename="readme.txt"'
    encoded = "r%C3%A9sum%C3%A9%20%C3%BC.txt"
    reply = await get(port, f"/files/{encoded}?download=1")
    assert (reply.status, reply.body) == (200, b"accents\n")
    assert reply.headers["Content-Disposition"] == (
        f"attachment; filename=\"r_sum_ _.txt\"; filename*=UTF-8''{encoded}"
    )
    reply = await get(port, "/files/docs/readme.txt?download=0")
    assert "Content-Disposition" not in reply.headers


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain.zip", 'attachment; filename="plain.zip"'),
        ("with space.iso", 'attachment; filename="with space.iso"'),
        (
            'say "hi".txt',
            "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt",
        ),
        ("back\\slash", "attachment; filename=\"back_slash\"; filename*=UTF-8''back%5Cslash"),
        ("100%.txt", "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt"),
        ("日本.bin", "attachment; filename=\"__.bin\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.bin"),
        ("a!#$&+^`|~.b", 'attachment; filename="a!#$&+^`|~.b"'),
        ("a;b=c'd", 'attachment; filename="a;b=c\'d"'),
    ],
)
def test_content_disposition(name: str, expected: str) -> None:
    assert content_disposition(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.txt", "text/plain"),
        ("A.PDF", "application/pdf"),
        ("x.tar.gz", "application/gzip"),
        ("x.tgz", "application/gzip"),
        ("x.zip", "application/zip"),
        ("x.unknown-ext", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(
    "tail",
    [
        "",
        "a/",
        "/etc",
        "a//b",
        ".",
        "..",
        "a/./b",
        "a/../b",
        "%2e%2e",
        "a%2Fb",
        "a%5cb",
        "a\\b",
        "a%00b",
        "a%0ab",
        "%zz",
        "a%2",
        "%c0%ae%c0%ae",
        "%ff",
    ],
)
def test_path_parts_refuses(tail: str) -> None:
    with pytest.raises(NotFound):
        path_parts(tail)


def test_path_parts_decodes() -> None:
    assert path_parts("a/b%20c/r%C3%A9.txt") == ("a", "b c", "ré.txt")
    assert path_parts("%252e%252e") == ("%2e%2e",)  # double encoding stays literal
    assert path_parts("...") == ("...",)


TRAVERSALS = [
    "/files/../secret.txt",
    "/files/docs/../../secret.txt",
    "/files/%2e%2e/secret.txt",
    "/files/%2E%2E/secret.txt",
    "/files/.%2e/secret.txt",
    "/files/..%2fsecret.txt",
    "/files/%2e%2e%2fsecret.txt",
    "/files/..%5csecret.txt",
    "/files/..\\secret.txt",
    "/files/%252e%252e/secret.txt",
    "/files/%c0%ae%c0%ae/secret.txt",
    "/files/docs/%2e%2e/%2e%2e/secret.txt",
    "/files//{secret}",
    "/files/%2f{secret_encoded}",
    "/files/escape.txt",  # a symlink to a file outside
    "/files/outside/secret.txt",  # through a symlinked directory outside
    "/files/outside",
    "/files/data.bin%00.txt",
    "/files/./data.bin",
    "/files/docs",  # a directory
    "/files/docs/",
    "/files/",
    "/files",
    "/files/missing.bin",
    "http://127.0.0.1/files/../secret.txt",  # absolute-form request target
    "http://127.0.0.1/files/%2e%2e/secret.txt",
]


async def test_traversal_attempts_are_404_and_leak_nothing(
    files_hub: TestServer, tmp_path: Path
) -> None:
    secret = str(tmp_path / "secret.txt")
    for template in TRAVERSALS:
        target = template.format(secret=secret.lstrip("/"), secret_encoded=secret.lstrip("/"))
        for method in ("GET", "HEAD"):
            reply = await exchange(files_hub.port, method, target)
            assert reply.status == 404, (method, target, reply.raw[:300])
            assert SECRET not in reply.raw, target
            assert reply.headers["Content-Type"].startswith("application/problem+json")


async def test_without_files_dir_everything_is_404(start_hub: HubFactory) -> None:
    hub = await start_hub()
    for target in ["/files/data.bin", "/files/", "/files/../etc/passwd"]:
        assert (await get(hub.port, target)).status == 404


async def test_empty_file(files_hub: TestServer) -> None:
    reply = await get(files_hub.port, "/files/empty.bin")
    assert (reply.status, reply.body, reply.headers["Content-Length"]) == (200, b"", "0")
    reply = await get(files_hub.port, "/files/empty.bin", {"Range": "bytes=-5"})
    assert (reply.status, reply.body) == (200, b"")


async def test_cache_control_is_configurable(start_hub: HubFactory, files_dir: Path) -> None:
    value = "public, max-age=31536000, immutable"
    hub = await start_hub(files_dir=files_dir, files_cache_control=value)
    assert (await get(hub.port, "/files/data.bin")).headers["Cache-Control"] == value


async def test_concurrent_downloads_of_one_file(start_hub: HubFactory, tmp_path: Path) -> None:
    data = random.Random(11).randbytes((4 << 20) + 17)
    (tmp_path / "big.bin").write_bytes(data)
    hub = await start_hub(files_dir=tmp_path, file_chunk_bytes=CHUNK)
    url = hub.make_url("/files/big.bin")
    ranges = [None, None, None, (0, 99_999), (1_000_000, 3_000_000), (4_000_000, len(data) - 1)]

    async def fetch(session: aiohttp.ClientSession, byte_range: tuple[int, int] | None) -> None:
        headers = {} if byte_range is None else {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"}
        async with session.get(url, headers=headers) as response:
            body = await response.read()
        first, last = byte_range or (0, len(data) - 1)
        assert response.status == (200 if byte_range is None else 206)
        assert hashlib.sha256(body).digest() == hashlib.sha256(data[first : last + 1]).digest()

    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        await asyncio.gather(*(fetch(session, byte_range) for byte_range in ranges * 2))


def _pattern(size: int) -> bytes:
    block = random.Random(3).randbytes((1 << 20) + 7)
    return (block * (size // len(block) + 1))[:size]


async def test_file_that_shrinks_mid_download_ends_the_response(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data = _pattern(32 << 20)
    path = tmp_path / "growing.bin"
    path.write_bytes(data)
    hub = await start_hub(files_dir=tmp_path, file_chunk_bytes=CHUNK)
    reader, writer, status, headers = await open_slow(hub.port, "/files/growing.bin")
    try:
        assert (status, headers["Content-Length"]) == (200, str(len(data)))
        received = await read_exactly(reader, 256 << 10)
        os.truncate(path, 1 << 20)
        received += await read_to_end(reader)  # ends: the hub closes the connection
    finally:
        await close(writer)
    assert 256 << 10 <= len(received) < len(data)
    assert received == data[: len(received)]
    # The hub is fine afterwards and serves the file as it is now.
    assert (await get(hub.port, "/files/growing.bin")).body == data[: 1 << 20]


async def test_file_removed_mid_download_is_still_sent_whole(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data = _pattern(8 << 20)
    path = tmp_path / "gone.bin"
    path.write_bytes(data)
    hub = await start_hub(files_dir=tmp_path, file_chunk_bytes=CHUNK)
    reader, writer, status, _ = await open_slow(hub.port, "/files/gone.bin")
    try:
        received = await read_exactly(reader, 64 << 10)
        path.unlink()  # the open file lives on until the download closes it
        received += await read_to_end(reader)
    finally:
        await close(writer)
    assert status == 200
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert (await get(hub.port, "/files/gone.bin")).status == 404


def test_chunks_double_while_the_client_keeps_up_and_halve_when_it_falls_behind() -> None:
    smallest, largest = SMALLEST_FILE_CHUNK_BYTES, 1 << 20
    sizes = [smallest]
    for _ in range(6):
        sizes.append(next_chunk_bytes(sizes[-1], True, largest))
    assert sizes == [smallest, 2 * smallest, 4 * smallest, 8 * smallest, largest, largest, largest]
    for _ in range(6):
        sizes.append(next_chunk_bytes(sizes[-1], False, largest))
    assert sizes[-6:] == [8 * smallest, 4 * smallest, 2 * smallest, smallest, smallest, smallest]
    # A --file-chunk below the smallest step is never exceeded, either way.
    assert next_chunk_bytes(4096, True, 4096) == 4096
    assert next_chunk_bytes(4096, False, 4096) == 4096


async def test_growing_and_shrinking_chunks_send_exact_bytes(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data = _pattern((24 << 20) + 12345)
    (tmp_path / "mixed.bin").write_bytes(data)
    hub = await start_hub(files_dir=tmp_path)  # the default --file-chunk: reads grow to 1 MiB
    fast = await get(hub.port, "/files/mixed.bin")
    assert (fast.status, fast.body == data) == (200, True)
    part = await get(hub.port, "/files/mixed.bin", {"Range": "bytes=70001-"})
    assert (part.status, part.body == data[70001:]) == (206, True)
    # A reader slower than the hub fills its socket, and the hub's reads shrink again.
    reader, writer, status, _ = await open_slow(hub.port, "/files/mixed.bin")
    received = bytearray()
    try:
        while len(received) < len(data):
            received += await read_exactly(reader, min(64 << 10, len(data) - len(received)))
            await asyncio.sleep(0.001)  # pacing, not synchronisation: a slow reader
    finally:
        await close(writer)
    assert (status, bytes(received) == data) == (200, True)


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as file:
        file.truncate(size)
    return path


def _http_tasks() -> list[asyncio.Task[object]]:
    """The tasks aiohttp runs per connection and per request."""
    return [
        task
        for task in asyncio.all_tasks()
        if "RequestHandler" in getattr(task.get_coro(), "__qualname__", "")
    ]


async def _settle(hub: TestServer) -> int:
    """Open fds once a first download has warmed up the hub's lazy parts (thread pool...)."""
    reply = await get(hub.port, "/files/warm.bin")
    assert reply.status == 200
    await wait_until(lambda: not _http_tasks(), "the warm-up connection to end")
    return open_fds()


async def test_client_abort_leaves_no_task_and_no_open_file(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    _sparse(tmp_path / "warm.bin", 1 << 20)
    _sparse(tmp_path / "huge.bin", 4 << 30)
    hub = await start_hub(files_dir=tmp_path)
    for reset in (False, True):
        fds = await _settle(hub)
        reader, writer, status, _ = await open_slow(hub.port, "/files/huge.bin")
        assert status == 200
        await read_exactly(reader, 1 << 20)  # the handler is mid-stream, its file open
        assert open_fds() >= fds + 3  # our socket, the hub's socket, the open file
        if reset:  # an abortive close (RST) as well as an orderly one (FIN)
            writer.transport.abort()
        await close(writer)
        await wait_until(lambda: open_fds() == fds, f"open fds back to {fds}")  # noqa: B023
        await wait_until(lambda: not _http_tasks(), "the handler's tasks to end")


async def test_client_that_stops_reading_is_disconnected(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    _sparse(tmp_path / "warm.bin", 1 << 20)
    _sparse(tmp_path / "huge.bin", 4 << 30)
    hub = await start_hub(files_dir=tmp_path, write_timeout_s=1.0)
    fds = await _settle(hub)
    reader, writer, status, _ = await open_slow(hub.port, "/files/huge.bin")
    try:
        assert status == 200
        # We read nothing more; once its write has waited write_timeout_s the hub gives up.
        await wait_until(lambda: not _http_tasks(), "the hub to drop the stalled download")
        assert len(await read_to_end(reader)) < 4 << 30
    finally:
        await close(writer)
    await wait_until(lambda: open_fds() == fds, f"open fds back to {fds}")


# Reads a download as fast as it can in another process, so the hub (in this
# process) has a CPU of its own and this process's RSS is the hub's alone.
_FAST_CLIENT = """
import socket, sys
port, target = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(f"GET {target} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n".encode())
buffer, total = bytearray(1 << 20), 0
while n := sock.recv_into(buffer):
    total += n
print(total)
"""


async def test_multi_gib_download_in_flat_memory(start_hub: HubFactory, tmp_path: Path) -> None:
    size = 2 << 30
    _sparse(tmp_path / "warm.bin", 64 << 20)
    _sparse(tmp_path / "huge.bin", size)
    hub = await start_hub(files_dir=tmp_path)
    await _settle(hub)
    baseline = peak = rss_bytes()
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FAST_CLIENT,
        str(hub.port),
        "/files/huge.bin",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            output = asyncio.ensure_future(client.communicate())
            while not output.done():
                peak = max(peak, rss_bytes())
                await asyncio.wait([output], timeout=0.05)
            stdout, _ = await output
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
    head_length = len(b"HTTP/1.1 200 OK\r\n")  # at least this much is headers
    received = int(stdout)
    assert size + head_length < received < size + 4096
    growth = peak - baseline
    assert growth < 16 << 20, f"RSS grew by {growth >> 20} MiB while sending {size >> 30} GiB"


def test_files_cache_control_setting() -> None:
    assert load_settings({}, {}).files_cache_control == "no-cache"
    env = {"SSE_HUB_FILES_CACHE_CONTROL": "public, max-age=60"}
    assert load_settings({}, env).files_cache_control == "public, max-age=60"
    for bad in ["no-cache\r\nSet-Cookie: x=1", "   ", "caf\u00e9"]:
        with pytest.raises(ConfigError, match=r"^--files-cache-control: "):
            load_settings({"files_cache_control": bad}, {})
