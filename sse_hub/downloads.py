"""``GET|HEAD /files/{path}``: large files from ``--files-dir``, resumable, in constant memory.

A request path is checked as text before the filesystem sees it (no empty,
``.`` or ``..`` segment, no percent-encoded separator or dot, no control
character), then resolved, symlinks included, and must still lie inside the
resolved files directory. Anything else, a directory or a missing file is 404.

The body is read with aiofiles one chunk at a time and each chunk is written
before the next is read: ``response.write`` waits while the socket is full,
so a download holds one chunk plus the transport's buffer however large the
file and however slow the client. A client that disconnects cancels the
handler (``handler_cancellation``); the file is closed on every way out.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import stat
import time
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote_to_bytes

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedReader
from aiohttp import hdrs, web

from sse_hub.auth import authorize_download
from sse_hub.config import Settings
from sse_hub.errors import ConfigError, NotFound
from sse_hub.keys import HUB
from sse_hub.ranges import entity_tag, http_date, if_range_holds, not_modified, parse_range

log = logging.getLogger(__name__)

# Percent-escapes that decode to ".", "/", "\" or NUL: refused rather than
# decoded, so no spelling of a path can turn into a traversal after the checks.
_ENCODED_SEPARATOR_OR_DOT = re.compile(r"%(?:2[eEfF]|5[cC]|00)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Compressed archives are served as what they are, never with Content-Encoding:
# a browser would otherwise unpack "x.tar.gz" while saving it.
_ARCHIVE_TYPES = {
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".br": "application/x-brotli",
}
# A private table built from Python's defaults only, so the Content-Type of a
# file does not depend on which /etc/mime.types the host happens to have.
_TYPES = mimetypes.MimeTypes(filenames=())
_DOWNLOAD_VALUES = {"1", "true", "yes"}
# RFC 8187 attr-char, minus what quote() always keeps (letters, digits, "_.-~").
_ATTR_CHAR_SAFE = "!#$&+^`|"
# Every download starts with reads of this size, and a client that falls behind
# goes back to it; --file-chunk is the size a client that keeps up grows to.
SMALLEST_FILE_CHUNK_BYTES = 64 * 1024


def path_parts(raw_tail: str) -> tuple[str, ...]:
    """The decoded segments of the still percent-encoded path below ``/files/``; 404 if unsafe."""
    if (
        not raw_tail
        or "\\" in raw_tail
        or _ENCODED_SEPARATOR_OR_DOT.search(raw_tail)
        or _BAD_ESCAPE.search(raw_tail)
    ):
        raise NotFound("no such file")
    try:
        text = unquote_to_bytes(raw_tail).decode("utf-8")
    except UnicodeDecodeError:
        raise NotFound("no such file") from None
    parts = tuple(text.split("/"))
    # An empty segment is an absolute path ("//etc") or a directory ("dir/").
    if _CONTROL.search(text) or any(part in {"", ".", ".."} for part in parts):
        raise NotFound("no such file")
    return parts


def content_type(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _ARCHIVE_TYPES:
        return _ARCHIVE_TYPES[suffix]
    return _TYPES.types_map[True].get(suffix) or "application/octet-stream"


def content_disposition(name: str) -> str:
    """``attachment`` with the file's name, readable by every browser (RFC 6266).

    The plain ``filename`` is an ASCII stand-in (RFC 6266 appendix D: no
    quotes, backslashes or percent signs there); when it differs from the real
    name, ``filename*`` carries the name in UTF-8 (RFC 8187), which wins.
    """
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\%' else "_" for char in name)
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=_ATTR_CHAR_SAFE)}"
    return value


def _raw_tail(request: web.Request) -> str:
    """The request path after the route's prefix, exactly as the client encoded it.

    aiohttp's ``match_info`` is already decoded (``%2F`` is ``/`` there), which
    would hide the very spellings the checks look for.
    """
    resource = request.match_info.route.resource
    prefix = "/files/" if resource is None else resource.canonical.removesuffix("{path}")
    raw = request.rel_url.raw_path
    if not raw.startswith(prefix):
        raise NotFound("no such file")
    return raw[len(prefix) :]


def _locate(root: Path, parts: tuple[str, ...]) -> tuple[Path, str]:
    """The real path of ``root/parts``, which must exist and stay inside ``root``.

    Also that path relative to the real ``root`` (``/``-separated): what a
    token must allow, since that is the file served.
    """
    try:
        real_root = root.resolve(strict=True)
        target = real_root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, symlink loop, too long...
        raise NotFound("no such file") from None
    if target == real_root or not target.is_relative_to(real_root):
        raise NotFound("no such file")
    return target, target.relative_to(real_root).as_posix()


def _open_flags(path: str, flags: int) -> int:
    # The path was resolved just before: a symlink appearing at its last
    # component since then is refused, and O_NONBLOCK keeps a FIFO from
    # blocking a worker thread (it is then refused as not a regular file).
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _close_abandoned(opening: asyncio.Future[AsyncBufferedReader]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().raw.close()


async def _open_reader(path: Path) -> AsyncBufferedReader:
    return await aiofiles.open(path, "rb", opener=_open_flags)


async def _open(path: Path) -> AsyncBufferedReader:
    """Open ``path`` with aiofiles; if the request is cancelled meanwhile, close it when opened."""
    opening = asyncio.ensure_future(_open_reader(path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_abandoned)
        raise
    except OSError:
        raise NotFound("no such file") from None


def check_files_dir(settings: Settings) -> None:
    """At start-up: ``--files-dir``, when given, must be a directory."""
    folder = settings.files_dir
    if folder is not None and not folder.is_dir():
        raise ConfigError("--files-dir", f"{str(folder)!r} is not a directory")


async def serve_file(request: web.Request) -> web.StreamResponse:
    settings = request.app[HUB].settings
    parts = path_parts(_raw_tail(request))
    if settings.files_dir is None:
        raise NotFound("this hub serves no files (no --files-dir)")
    # Before the filesystem is touched: nothing about a file is revealed to a
    # caller whose token does not allow its path.
    asked = "/".join(parts)
    authorize_download(request, asked)
    path, served = await asyncio.to_thread(_locate, settings.files_dir, parts)
    if served != asked:  # through a symlink: the file served must be allowed too
        authorize_download(request, served, asked=asked)
    file = await _open(path)
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotFound("no such file")
        return await _respond(request, file, info, parts[-1])
    finally:
        # Shielded: a second cancellation (the client hanging up as the
        # handler ends) must not drop a close still queued for the thread pool.
        await asyncio.shield(file.close())


async def _respond(
    request: web.Request, file: AsyncBufferedReader, info: os.stat_result, name: str
) -> web.StreamResponse:
    settings = request.app[HUB].settings
    size = info.st_size
    last_modified_s = info.st_mtime_ns // 1_000_000_000
    etag = entity_tag(size, info.st_mtime_ns, info.st_ino)
    headers = {
        hdrs.ACCEPT_RANGES: "bytes",
        hdrs.ETAG: etag,
        hdrs.LAST_MODIFIED: http_date(last_modified_s),
        hdrs.CACHE_CONTROL: settings.files_cache_control,
        hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
    }
    if not_modified(
        _joined(request, hdrs.IF_NONE_MATCH),
        _joined(request, hdrs.IF_MODIFIED_SINCE),
        etag,
        last_modified_s,
    ):
        # RFC 9110 section 15.4.5: a 304 carries the validators and Cache-Control, no body.
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = content_type(name)
    if request.query.get("download", "").lower() in _DOWNLOAD_VALUES:
        headers[hdrs.CONTENT_DISPOSITION] = content_disposition(name)

    byte_range = None
    # RFC 9110 section 14.2: GET is the only method range handling is defined
    # for, so HEAD ignores Range (and If-Range) and describes the whole file.
    if request.method == hdrs.METH_GET and if_range_holds(
        _joined(request, hdrs.IF_RANGE), etag, last_modified_s, time.time()
    ):
        byte_range = parse_range(_joined(request, hdrs.RANGE), size)  # may raise 416
    first, last = byte_range if byte_range is not None else (0, size - 1)
    if byte_range is not None:
        headers[hdrs.CONTENT_RANGE] = f"bytes {first}-{last}/{size}"

    response = web.StreamResponse(status=200 if byte_range is None else 206, headers=headers)
    response.content_length = last - first + 1
    await response.prepare(request)
    if request.method == hdrs.METH_GET:
        await _send(request, response, file, first, last - first + 1)
    return response


def _joined(request: web.Request, name: str) -> str | None:
    """A header's field lines joined as one list (RFC 9110 section 5.3), or ``None``."""
    values = request.headers.getall(name, [])
    return ", ".join(values) if values else None


def next_chunk_bytes(current: int, client_kept_up: bool, largest: int) -> int:
    """The size of the next read: doubled while the client keeps up, halved when it falls behind.

    A fast client soon reads ``largest`` bytes per trip through aiofiles' thread
    pool, whose fixed cost per chunk dominates small reads; a slow one, whose
    bytes wait in the socket anyway, holds no more than the smallest chunk.
    """
    smallest = min(SMALLEST_FILE_CHUNK_BYTES, largest)
    if client_kept_up:
        return min(current * 2, largest)
    return max(current // 2, smallest)


async def _write_waited(response: web.StreamResponse, chunk: bytes) -> bool:
    """Write ``chunk``; whether it had to wait for the client (the socket could not take it all).

    ``response.write`` returns without suspending when the kernel accepts the
    bytes, and waits for the transport to drain when it does not; a callback
    queued just before then runs only if the write suspended.
    """
    suspended = asyncio.Event()
    marker = asyncio.get_running_loop().call_soon(suspended.set)
    try:
        await response.write(chunk)
    finally:
        marker.cancel()
    return suspended.is_set()


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    file: AsyncBufferedReader,
    first: int,
    length: int,
) -> None:
    """Copy ``length`` bytes from ``first`` on, one chunk in memory at a time."""
    hub = request.app[HUB]
    settings = hub.settings
    chunk_bytes = min(SMALLEST_FILE_CHUNK_BYTES, settings.file_chunk_bytes)
    remaining = length
    try:
        await file.seek(first)
        while remaining > 0:
            chunk = await file.read(min(chunk_bytes, remaining))
            if not chunk:
                # The file shrank under us. The headers promised more bytes, so
                # the only honest end is closing the connection: the client sees
                # a short body and resumes, instead of waiting for bytes that
                # will never come or mistaking the next response for them.
                log.warning("%s shrank while being sent; closing the connection", request.path)
                response.force_close()
                return
            remaining -= len(chunk)
            async with asyncio.timeout(settings.write_timeout_s):
                waited = await _write_waited(response, chunk)
            hub.counters.file_bytes_served += len(chunk)
            chunk_bytes = next_chunk_bytes(chunk_bytes, not waited, settings.file_chunk_bytes)
    except TimeoutError:
        log.info("disconnected a download that stopped reading (%s)", request.remote)
        if request.transport is not None:
            request.transport.abort()  # its unread bytes would never drain
    except ConnectionError:
        pass  # the client went away mid-write
    except OSError as exc:  # a read error: same as a shrunk file
        log.warning("reading %s failed (%s); closing the connection", request.path, exc)
        response.force_close()
