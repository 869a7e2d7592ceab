"""How each target is spoken to: the exact request bytes to subscribe, resume and publish.

All three take HTTP/1.1 on loopback. The hub publishes through PostgreSQL and
takes batches; nchan and the sse-starlette app take one message per request,
as their users publish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

ACCEPTED = frozenset({200, 201, 202})


@dataclass(frozen=True)
class Dialect:
    name: str
    max_batch: int
    can_replay: bool

    def subscribe(self, host: str, topic: str) -> bytes:
        raise NotImplementedError

    def resume(self, host: str, topic: str, after: int) -> bytes:
        raise NotImplementedError(f"{self.name} has no replay")

    def publish(self, host: str, events: list[tuple[str, str]], *, retained: bool = False) -> bytes:
        """One request publishing ``events`` ((topic, data) pairs), at most ``max_batch``."""
        raise NotImplementedError

    def first_id(self, body: bytes) -> int | None:
        """The id of the first event a publish response reports, where the target says."""
        return None


def _get(path: str, host: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Cache-Control: no-cache\r\n{extra}\r\n"
    ).encode("latin-1")


def _post(path: str, host: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class HubDialect(Dialect):
    def subscribe(self, host: str, topic: str) -> bytes:
        return _get(f"/events?topic={quote(topic, safe='')}", host)

    def resume(self, host: str, topic: str, after: int) -> bytes:
        return _get(f"/events?topic={quote(topic, safe='')}", host, f"Last-Event-ID: {after}\r\n")

    def publish(self, host: str, events: list[tuple[str, str]], *, retained: bool = False) -> bytes:
        if len(events) == 1:
            topic, data = events[0]
            document: object = {"topic": topic, "data": data}
        else:
            document = [{"topic": topic, "data": data} for topic, data in events]
        body = json.dumps(document, separators=(",", ":")).encode()
        return _post("/events", host, "application/json", body)

    def first_id(self, body: bytes) -> int | None:
        answer = json.loads(body)
        if "id" in answer:
            return int(answer["id"])
        ids = answer.get("ids") or [None]
        return None if ids[0] is None else int(ids[0])


class NchanDialect(Dialect):
    """``/pub`` keeps 10 messages per channel; ``/pubr`` keeps the replay history."""

    def subscribe(self, host: str, topic: str) -> bytes:
        return _get(f"/events?topic={quote(topic, safe='')}", host)

    def resume(self, host: str, topic: str, after: int) -> bytes:
        # nchan ids are its own (time:tag); a subscriber on /replay starts at the oldest message.
        return _get(f"/replay?topic={quote(topic, safe='')}", host)

    def publish(self, host: str, events: list[tuple[str, str]], *, retained: bool = False) -> bytes:
        ((topic, data),) = events
        path = "/pubr" if retained else "/pub"
        return _post(f"{path}?topic={quote(topic, safe='')}", host, "text/plain", data.encode())


class StarletteDialect(Dialect):
    def subscribe(self, host: str, topic: str) -> bytes:
        return _get(f"/events?topic={quote(topic, safe='')}", host)

    def publish(self, host: str, events: list[tuple[str, str]], *, retained: bool = False) -> bytes:
        ((topic, data),) = events
        return _post(f"/publish?topic={quote(topic, safe='')}", host, "text/plain", data.encode())


DIALECTS: dict[str, Dialect] = {
    "hub": HubDialect("hub", max_batch=1000, can_replay=True),
    "nchan": NchanDialect("nchan", max_batch=1, can_replay=True),
    "starlette": StarletteDialect("starlette", max_batch=1, can_replay=False),
}
