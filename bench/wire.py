"""What the load client does with the bytes it reads: pure, cheap and tested byte for byte.

The client reads thousands of streams at once, so each read must cost a few
C-level calls, not a Python loop per event:

- ``ResponseHead`` collects the status line and headers, however they are split.
- ``ChunkedDecoder`` undoes ``Transfer-Encoding: chunked`` (aiohttp and uvicorn
  stream that way; nchan writes the bytes raw and ends by closing).
- ``EventCounter`` counts events as occurrences of ``data:``. Every event the
  bench publishes is a single line of data, so one ``data:`` is one event, and
  ``bytes.count`` does the work. A token split between two reads is found by
  keeping the last ``len(token) - 1`` bytes of the previous read: too short to
  hold a whole token, so nothing is counted twice.
- ``LatencyParser`` (on a sample of connections only) reads the send time that
  the publisher put first in each event's data and returns publish→receive
  latencies.
- ``FrameReader`` reads whole frames: each event's id and send time, and the
  ``retry:`` delay, for clients that resume (the scale scenario's reconnect
  storm), where every id matters and a per-line loop is the price.
"""

from __future__ import annotations

import math

DATA_TOKEN = b"data:"
HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024


class WireError(Exception):
    """The peer sent something this client does not understand."""


class ResponseHead:
    """Accumulates an HTTP/1.1 response head; ``feed`` returns the body bytes after it."""

    __slots__ = ("_buffer", "done", "headers", "status")

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False
        self.status = 0
        self.headers: dict[str, str] = {}

    def feed(self, data: bytes) -> bytes:
        """Consume head bytes; once the head is complete, return what follows it."""
        if self.done:
            return data
        self._buffer += data
        end = self._buffer.find(HEAD_END)
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise WireError("response head too large")
            return b""
        head, rest = self._buffer[:end], self._buffer[end + len(HEAD_END) :]
        self._buffer = b""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise WireError(f"not an HTTP response: {lines[0]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.done = True
        return rest

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder (RFC 9112 section 7.1).

    ``feed`` returns the payload bytes in the input, joined; ``finished`` turns
    true after the last (zero-length) chunk. Chunk extensions are ignored and
    trailers are skipped.
    """

    __slots__ = ("_line", "_remaining", "_state", "finished")

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self) -> None:
        self._state = self._SIZE
        self._remaining = 0
        self._line = b""
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        size = len(data)
        while pos < size and not self.finished:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, size - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END
                    self._line = b""
                continue
            # Every other state reads one CRLF-terminated line.
            end = data.find(b"\n", pos)
            if end < 0:
                self._line += data[pos:]
                if len(self._line) > 4096:
                    raise WireError("chunk size line too long")
                break
            line = self._line + data[pos:end]
            self._line = b""
            pos = end + 1
            if state == self._SIZE:
                text = line.split(b";", 1)[0].strip()
                try:
                    self._remaining = int(text, 16)
                except ValueError:
                    raise WireError(f"bad chunk size {text!r}") from None
                self._state = self._DATA if self._remaining else self._TRAILER
            elif state == self._DATA_END:
                if line.strip():
                    raise WireError("chunk data not followed by CRLF")
                self._state = self._SIZE
            elif not line.strip():  # _TRAILER: a blank line ends the message
                self.finished = True
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)


class EventCounter:
    """Counts ``data:`` tokens across arbitrary read boundaries."""

    __slots__ = ("_carry", "count")

    def __init__(self) -> None:
        self._carry = b""
        self.count = 0

    def feed(self, payload: bytes) -> int:
        """Add the events completed in ``payload``; returns how many were new."""
        if not payload:
            return 0
        window = self._carry + payload if self._carry else payload
        found = window.count(DATA_TOKEN)
        self._carry = window[-(len(DATA_TOKEN) - 1) :]
        self.count += found
        return found


class LatencyParser:
    """Extracts the send time (``time.time_ns()``, first field of the data) of each event."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, payload: bytes, received_ns: int) -> list[int]:
        """Latencies in nanoseconds of every event whose ``data:`` line ended in ``payload``."""
        buffer = self._buffer + payload if self._buffer else payload
        latencies: list[int] = []
        pos = 0
        while True:
            start = buffer.find(DATA_TOKEN, pos)
            if start < 0:
                # Keep a possible partial token at the end.
                self._buffer = buffer[-(len(DATA_TOKEN) - 1) :]
                return latencies
            end = buffer.find(b"\n", start)
            if end < 0:
                self._buffer = buffer[start:]
                return latencies
            fields = buffer[start + len(DATA_TOKEN) : end].split(None, 1)
            if fields and fields[0].isdigit():
                latencies.append(received_ns - int(fields[0]))
            pos = end + 1


class FrameReader:
    """Events (integer id, send time) and ``retry:`` values, across arbitrary read boundaries.

    Follows the WHATWG HTML event-stream interpretation where the bench needs
    it: lines end with LF, CR LF or CR; a blank line dispatches the event; an
    ``id`` field persists to later events (``last_id``); a comment or a frame
    without ``data`` dispatches nothing. Events whose id is not an integer (or
    absent) are reported with id ``-1``; a data line that does not start with a
    send time gives send time ``0``.
    """

    __slots__ = ("_data", "_partial", "last_id", "retry_ms")

    def __init__(self) -> None:
        self._partial = b""
        self._data: int | None = None  # the send time of the event being read, once data came
        self.last_id = -1
        self.retry_ms: int | None = None

    def feed(self, payload: bytes) -> list[tuple[int, int]]:
        """(id, send time in ns) of every event completed in ``payload``."""
        buffer = self._partial + payload if self._partial else payload
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):  # a CR LF may be split between reads
                buffer, held = buffer[:-1], b"\r"
            else:
                held = b""
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        lines = buffer.split(b"\n")
        self._partial = lines.pop()
        events: list[tuple[int, int]] = []
        for line in lines:
            if not line:
                if self._data is not None:
                    events.append((self.last_id, self._data))
                    self._data = None
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                if self._data is None:
                    head = value.split(None, 1)
                    self._data = int(head[0]) if head and head[0].isdigit() else 0
            elif name == b"id":
                self.last_id = int(value) if value.isdigit() else -1
            elif name == b"retry" and value.isdigit():
                self.retry_ms = int(value)
        return events


def event_data(sent_ns: int, seq: int, pad_bytes: int) -> str:
    """The data of one benchmark event: send time first, then a sequence number and padding."""
    head = f"{sent_ns} {seq} "
    return head + "x" * max(0, pad_bytes - len(head))


def percentile(sorted_values: list[int] | list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (``fraction`` in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values), max(1, math.ceil(fraction * len(sorted_values))))
    return float(sorted_values[rank - 1])
