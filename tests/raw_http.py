"""A raw HTTP/1.1 client for download tests: the request target goes out byte for byte.

Clients such as aiohttp or curl normalise ``..`` and percent-escapes before
sending; traversal tests must not let them. Replies are read to the end of the
connection and split by hand, so a body longer or shorter than its
``Content-Length`` is seen, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from multidict import CIMultiDict

TIMEOUT_S = 30.0


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    raw: bytes


def request_bytes(method: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def parse_head(head: bytes) -> tuple[int, CIMultiDict[str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return status, headers


async def exchange(
    port: int | None, method: str, target: str, headers: dict[str, str] | None = None
) -> Reply:
    """Send one request on a new connection and read the reply until the hub closes it."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(method, target, headers))
        async with asyncio.timeout(TIMEOUT_S):
            raw = await reader.read(-1)
    finally:
        await close(writer)
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no complete response head in {raw[:200]!r}"
    status, reply_headers = parse_head(head)
    return Reply(status, reply_headers, body, raw)


async def get(port: int | None, target: str, headers: dict[str, str] | None = None) -> Reply:
    return await exchange(port, "GET", target, headers)


async def open_slow(
    port: int | None, target: str, headers: dict[str, str] | None = None, *, rcvbuf: int = 16384
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, CIMultiDict[str]]:
    """A connection with a small receive buffer, its request sent and reply head read.

    The hub can then get only a little ahead of what the test has read, so a
    test can act mid-download (truncate the file, hang up, stop reading).
    """
    assert port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
    writer.write(request_bytes("GET", target, headers))
    async with asyncio.timeout(TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
    status, reply_headers = parse_head(head[:-4])
    return reader, writer, status, reply_headers


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # a reset connection is closed all the same
        await writer.wait_closed()


async def read_exactly(reader: asyncio.StreamReader, count: int) -> bytes:
    async with asyncio.timeout(TIMEOUT_S):
        return await reader.readexactly(count)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """What is left until the hub closes (a reset counts as the end too)."""
    data = bytearray()
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            try:
                chunk = await reader.read(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return bytes(data)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S
) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.02)
