"""The Python client: subscribe to a hub without ever missing an event, and publish.

``Client(url, token=...)`` talks to a hub over HTTP with aiohttp. ``subscribe``
yields the events of some topics for as long as it is iterated: after a
dropped connection, a hub restart or refused connections it reconnects by
itself with ``Last-Event-ID``, and the hub replays exactly what was missed.
When it waits, and for how long, is ``reconnect.py``'s decision; an answer
that would be the same on every attempt (``400``, ``401``, ``403``, ``404``,
``422`` ...) raises ``ProblemError`` instead.

Two bounds hold whatever the hub or the network does. A connection on which
nothing arrives for ``idle_timeout_s`` (the hub sends a heartbeat after every
``--heartbeat`` of silence, so a live one never goes that quiet) is given up
and replaced: that is how a half-open connection, one whose peer vanished
without a FIN, is noticed. And memory holds one event: the stream is read in
chunks of ``READ_CHUNK_BYTES`` into ``frames.FrameParser``, and an event that
grows past ``max_event_bytes`` raises ``StreamError`` rather than being
buffered (reconnecting would only replay the same event).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp

from sse_hub.config import DEFAULT_HEARTBEAT_S, DEFAULT_MAX_DATA_BYTES, DEFAULT_RETRY_MS
from sse_hub.frames import RESET_EVENT, FrameParser, ParsedFrame
from sse_hub.reconnect import Backoff, is_retried, parse_retry_after
from sse_hub.replay import EARLIEST

log = logging.getLogger(__name__)

# Three heartbeats of a hub on its defaults: one late heartbeat is no reason to reconnect.
DEFAULT_IDLE_TIMEOUT_S = 3 * DEFAULT_HEARTBEAT_S
# The hub's default --max-data, plus room for the id and event type of the frame.
DEFAULT_MAX_EVENT_BYTES = DEFAULT_MAX_DATA_BYTES + 64 * 1024
DEFAULT_MAX_RETRY_DELAY_S = 30.0
READ_CHUNK_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 1024 * 1024  # a problem, or the ids of a publish
PROBLEM_TYPES = {"application/problem+json", "application/json"}

# Our own deadlines (asyncio.timeout) bound every wait; the session's total of 300 s must not.
_NO_TIMEOUT = aiohttp.ClientTimeout()
_EVENT_ID = re.compile(r"[0-9]{1,19}")
# Errors that no attempt will cure: the URL, redirects in a loop, the hub's certificate.
_FINAL_ERRORS = (
    aiohttp.InvalidURL,
    aiohttp.TooManyRedirects,
    aiohttp.ClientConnectorCertificateError,
)

Token = str | Callable[[], str] | Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a subscription: the hub's id, its type (``None`` when untyped), its data."""

    id: int
    event: str | None
    data: str

    def json(self) -> Any:
        """The data read as JSON (what ``publish`` sends for data that is not a string)."""
        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """The hub no longer has events the subscription asked for: the application should re-sync.

    ``oldest_id`` is the oldest event the hub still has; the subscription goes
    on from there. ``reason`` is ``history-truncated`` (retention deleted the
    events) or ``unknown-id`` (the id was never handed out by this database).
    The notice moves no position: ``id`` is the id the subscription resumed
    from, ``event`` is ``sse-hub.reset`` and ``data`` the notice's JSON.
    """

    reason: str
    oldest_id: int


class ProblemError(Exception):
    """The hub refused a request, and asking again would not change its answer.

    Carries the fields of the hub's ``application/problem+json`` (RFC 9457)
    answer; a refusal without one (a proxy's) gets the status and its reason.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        type: str = "about:blank",  # RFC 9457's member name
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.retry_after_s = retry_after_s


class StreamError(Exception):
    """What the hub sent cannot be read as its event stream; reconnecting would not help.

    Not ``text/event-stream``, an event without an integer id (not a hub),
    a malformed reset notice, or an event larger than ``max_event_bytes``.
    """


class Client:
    """A hub at ``url`` (the address its ``/events`` is under), used from async code.

    ``token`` is sent as ``Authorization: Bearer`` on every request; give a
    function (plain or async) to have a fresh one each time, as tokens expire
    and a subscription reconnects for as long as it lives. ``session`` is an
    aiohttp session of yours (proxies, TLS); the client never closes it.
    """

    def __init__(
        self,
        url: str,
        *,
        token: Token | None = None,
        session: aiohttp.ClientSession | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        retry_ms: int = DEFAULT_RETRY_MS,
        max_retry_delay_s: float = DEFAULT_MAX_RETRY_DELAY_S,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the hub's url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.idle_timeout_s = idle_timeout_s
        self.max_event_bytes = max_event_bytes
        self.retry_ms = retry_ms
        self.max_retry_delay_s = max_retry_delay_s
        self._token = token
        self._session = session
        self._owns_session = session is None
        self._closed = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def close(self) -> None:
        """End every subscription (their iterations stop) and close the client's own session."""
        self._closed.set()
        if self._owns_session and self._session is not None:
            await self._session.close()

    def subscribe(self, *topics: str, last_event_id: int | str | None = None) -> Subscription:
        """The events of ``topics`` (patterns such as ``orders/*`` work), in id order.

        ``last_event_id``: resume after this id (a saved ``Event.id``), or
        ``"earliest"`` for every retained event; without it the subscription
        starts with the events published once it is connected.
        """
        if not topics:
            raise ValueError("subscribe to at least one topic")
        return Subscription(self, topics, _resume_point(last_event_id))

    async def publish(self, topic: str, data: Any, *, event: str | None = None) -> int:
        """Publish one event; its id, once committed. Data that is not a string goes as JSON.

        Never retried: a publish whose answer was lost may have been stored.
        """
        body: dict[str, Any] = {"topic": topic, "data": data}
        if event is not None:
            body["event"] = event
        async with asyncio.timeout(self.idle_timeout_s):
            headers = await self._headers()
            async with self._http().post(
                self.url + "/events", json=body, headers=headers, timeout=_NO_TIMEOUT
            ) as response:
                if response.status != 201:
                    raise await _problem(response)
                answer = json.loads(await _read_at_most(response, MAX_ANSWER_BYTES))
        return int(answer["id"])

    def _http(self) -> aiohttp.ClientSession:
        if self.closed:
            raise RuntimeError("the client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()  # in the running loop, on first use
        return self._session

    async def _headers(self) -> dict[str, str]:
        source = self._token
        token = source() if callable(source) else source
        if inspect.isawaitable(token):
            token = await token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _pause(self, delay_s: float, wake: asyncio.Event) -> bool:
        """Wait ``delay_s``, or until ``wake`` is set; ``False`` when the client was closed."""
        closed = asyncio.ensure_future(self._closed.wait())
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([closed, woken], timeout=delay_s, return_when="FIRST_COMPLETED")
        finally:
            for waiter in (closed, woken):
                waiter.cancel()
        return not self.closed


class Subscription:
    """The events of some topics, each once and in order, for as long as it is iterated.

    Iterate it (``async for``); leave it with ``break``, or use it as an
    ``async with`` block to close its connection at once. ``last_event_id``
    is where it stands: the id of the last event it delivered. ``connects``
    counts the streams the hub has opened for it (``connects - 1`` reconnects);
    ``connected_at`` is the ``time.time()`` at which the current one was
    requested, ``None`` while none is open. Events published after it came
    live; those before it, replayed. (Not the moment the answer arrived: a
    proxy that buffers holds that back with the events.)
    """

    def __init__(
        self, client: Client, topics: tuple[str, ...], last_event_id: int | str | None
    ) -> None:
        self.topics = topics
        self.last_event_id = last_event_id
        self.connects = 0
        self.connected_at: float | None = None
        self._client = client
        self._events = self._run()
        self._response: aiohttp.ClientResponse | None = None
        self._connected = asyncio.Event()
        self._reconnect_asked = asyncio.Event()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def reconnect(self) -> bool:
        """Drop the current stream and open a new one at once, resuming after ``last_event_id``.

        What a network drop does, without the wait: the hub replays what the
        new stream missed. ``True`` when a stream was open and is dropped;
        ``False`` when none was (a wait between attempts is cut short, and a
        stream being opened is the new one).
        """
        self._reconnect_asked.set()
        if self._response is None:
            return False
        self._response.close()
        return True

    async def wait_connected(self) -> None:
        """Return once the hub has opened a stream (at once while one is open).

        The subscription connects while it is iterated: iterate it in another task.
        """
        await self._connected.wait()

    async def _run(self) -> AsyncGenerator[Event, None]:
        client = self._client
        backoff = Backoff(client.retry_ms / 1000, client.max_retry_delay_s)
        while not client.closed:
            retry_after_s: float | None = None
            try:
                self._reconnect_asked.clear()
                requested_at = time.time()
                response = await self._connect()
                self._reconnect_asked.clear()  # this stream is the new one
                try:
                    if response.status != 200:
                        retry_after_s = await self._refused(response)
                        outcome = f"{response.status} {response.reason}"
                    else:
                        _check_event_stream(response)
                        self._opened(response, requested_at)
                        async with contextlib.aclosing(self._read(response, backoff)) as events:
                            async for event in events:
                                yield event
                        outcome = "the hub ended the stream"
                finally:
                    self._closed_stream()
                    response.close()
            except _FINAL_ERRORS:
                raise
            except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
                if client.closed:
                    return  # closing the client broke the connection, or came before it
                if isinstance(exc, RuntimeError):
                    raise
                outcome = _describe(exc, client.idle_timeout_s)
            if self._reconnect_asked.is_set():
                log.info(
                    "stream of %s from %s dropped: reconnect() asked for a new one",
                    ", ".join(self.topics),
                    client.url,
                )
                continue
            delay_s = backoff.next_delay_s(retry_after_s)
            log.log(
                logging.INFO if backoff.failures == 1 else logging.WARNING,
                "stream of %s from %s: %s; reconnecting in %.1f s (Last-Event-ID: %s)",
                ", ".join(self.topics),
                client.url,
                outcome,
                delay_s,
                self.last_event_id,
            )
            if not await client._pause(delay_s, self._reconnect_asked):
                return

    def _opened(self, response: aiohttp.ClientResponse, requested_at: float) -> None:
        self._response = response
        self.connects += 1
        self.connected_at = requested_at
        self._connected.set()

    def _closed_stream(self) -> None:
        self._response = None
        self.connected_at = None
        self._connected.clear()

    async def _connect(self) -> aiohttp.ClientResponse:
        client = self._client
        headers = await client._headers()
        headers["Accept"] = "text/event-stream"
        headers["Accept-Encoding"] = "identity"  # a compressed stream would come in bursts
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        async with asyncio.timeout(client.idle_timeout_s):
            return await client._http().get(
                client.url + "/events",
                params=[("topic", topic) for topic in self.topics],
                headers=headers,
                timeout=_NO_TIMEOUT,
            )

    async def _refused(self, response: aiohttp.ClientResponse) -> float | None:
        """How long the hub asked us to wait (``Retry-After``), or the problem that ends this."""
        if is_retried(response.status):
            return parse_retry_after(response.headers.get("Retry-After"))
        async with asyncio.timeout(self._client.idle_timeout_s):
            raise await _problem(response)

    async def _read(
        self, response: aiohttp.ClientResponse, backoff: Backoff
    ) -> AsyncGenerator[Event, None]:
        client = self._client
        parser = FrameParser()  # a new connection: what a dropped one left unfinished is gone
        while True:
            async with asyncio.timeout(client.idle_timeout_s):
                chunk = await response.content.read(READ_CHUNK_BYTES)
            if not chunk:
                return
            backoff.connected()
            frames = parser.feed(chunk)
            if parser.retry is not None:
                backoff.retry_s = parser.retry / 1000
            for frame in frames:
                if frame.data is None:
                    continue  # a block without data is no event (WHATWG)
                event = self._event(frame, frame.data)
                if not isinstance(event, Reset):
                    self.last_event_id = event.id
                yield event
            if parser.pending_bytes > client.max_event_bytes:
                raise StreamError(
                    f"an event after id {self.last_event_id} is larger than max_event_bytes "
                    f"({client.max_event_bytes}); give the client a larger limit"
                )

    def _event(self, frame: ParsedFrame, data: str) -> Event:
        if frame.event == RESET_EVENT:
            try:
                notice = json.loads(data)
                reason, oldest_id = str(notice["reason"]), int(notice["oldest_id"])
            except (ValueError, TypeError, KeyError):
                raise StreamError(f"a malformed {RESET_EVENT} notice: {data[:200]!r}") from None
            position = self.last_event_id if isinstance(self.last_event_id, int) else 0
            return Reset(position, RESET_EVENT, data, reason=reason, oldest_id=oldest_id)
        if frame.id is None or not _EVENT_ID.fullmatch(frame.id):
            raise StreamError(
                f"an event without an integer id ({frame.id!r}) from {self._client.url}: "
                "is it an sse_hub?"
            )
        return Event(int(frame.id), frame.event or None, data)


def _resume_point(value: int | str | None) -> int | str | None:
    if value is None or value == EARLIEST:
        return value
    if isinstance(value, str) and _EVENT_ID.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"last_event_id must be an event id or {EARLIEST!r}, got {value!r}")


def _check_event_stream(response: aiohttp.ClientResponse) -> None:
    if response.content_type != "text/event-stream":
        raise StreamError(
            f"{response.url} answered {response.content_type}, not text/event-stream: "
            "is the client's url the hub's?"
        )


def _describe(exc: BaseException, idle_timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"nothing from the hub for {idle_timeout_s:g} s"
    return str(exc) or type(exc).__name__


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    while len(body) <= limit:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


async def _problem(response: aiohttp.ClientResponse) -> ProblemError:
    """The hub's problem+json answer as an exception (a proxy's plain answer too)."""
    fields: dict[str, Any] = {}
    if response.content_type in PROBLEM_TYPES:
        with contextlib.suppress(ValueError):
            body = json.loads(await _read_at_most(response, MAX_ANSWER_BYTES))
            fields = body if isinstance(body, dict) else {}
    return ProblemError(
        response.status,
        str(fields.get("title") or response.reason or ""),
        str(fields.get("detail") or ""),
        type=str(fields.get("type") or "about:blank"),
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
    )
