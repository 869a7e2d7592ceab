"""``POST /events``: validate everything first, then store it in one transaction.

Bodies: a JSON object, a JSON array of objects (atomic, in order), or a
form-encoded ``topic``/``data``/``event`` so that plain ``curl -d`` publishes.
A request is answered ``201`` only once its events are committed, with the ids
every subscriber will see.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from sse_hub.auth import authenticate, authorize_publish
from sse_hub.errors import (
    InvalidInput,
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from sse_hub.events import NewEvent, new_event
from sse_hub.hub import Hub
from sse_hub.keys import HUB
from sse_hub.throttle import THROTTLE

JSON_TYPES = {"application/json", "text/json"}
FORM_TYPE = "application/x-www-form-urlencoded"
EVENT_FIELDS = {"topic", "data", "event"}


async def read_body(request: web.Request, limit_bytes: int) -> bytes:
    """The whole body, refusing more than ``limit_bytes`` before reading it all."""
    too_large = PayloadTooLarge(f"the request body is over the limit of {limit_bytes} bytes")
    if request.content_length is not None and request.content_length > limit_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit_bytes:
            raise too_large
    return bytes(body)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one, not one per request


TOO_DEEP = "the body nests JSON deeper than this hub accepts (Python's parser limit, ~900 levels)"


def _parse_json(body: bytes) -> Any:
    # Nesting is bounded by Python's own recursion limit, not a count of ours:
    # checking a depth would walk every document on the publish path.
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequest(TOO_DEEP) from None


def _event_from_object(item: Any, *, where: str, max_data_bytes: int) -> NewEvent:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}must be a JSON object with topic and data")
    unknown = sorted(set(item) - EVENT_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{where}unknown field(s) {', '.join(unknown)}; expected topic, data, event"
        )
    if "topic" not in item:
        raise InvalidInput(f"{where}topic is required")
    if "data" not in item:
        raise InvalidInput(f"{where}data is required")
    try:
        return new_event(
            item["topic"], item["data"], item.get("event"), max_data_bytes=max_data_bytes
        )
    except (InvalidInput, PayloadTooLarge) as exc:
        raise type(exc)(where + exc.detail) from None
    except RecursionError:  # data that decoded but is too deep to encode again
        raise MalformedRequest(where + TOO_DEEP) from None


def events_from_json(
    document: Any, *, max_batch: int, max_data_bytes: int
) -> tuple[list[NewEvent], bool]:
    """The events of a JSON body, and whether it was a batch (an array)."""
    if isinstance(document, list):
        if not document:
            raise InvalidInput("a batch must hold at least one event")
        if len(document) > max_batch:
            raise PayloadTooLarge(f"a batch holds at most {max_batch} events, got {len(document)}")
        events = [
            _event_from_object(item, where=f"event {index}: ", max_data_bytes=max_data_bytes)
            for index, item in enumerate(document)
        ]
        return events, True
    return [_event_from_object(document, where="", max_data_bytes=max_data_bytes)], False


def event_from_form(body: bytes, *, max_data_bytes: int) -> NewEvent:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"the form body is not valid: {exc}") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key not in EVENT_FIELDS:
            raise InvalidInput(f"unknown form field {key!r}; expected topic, data, event")
        if key in fields:
            raise InvalidInput(f"form field {key!r} is given twice")
        fields[key] = value
    if "topic" not in fields:
        raise InvalidInput("topic is required")
    if "data" not in fields:
        raise InvalidInput("data is required")
    return new_event(
        fields["topic"], fields["data"], fields.get("event") or None, max_data_bytes=max_data_bytes
    )


async def publish_events(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    settings = hub.settings
    # Who first (401), then how often (429), and only then read and check the body.
    grant = authenticate(request, header_only=True)
    request.app[THROTTLE].check_publish(request, grant)
    content_type = request.content_type
    is_json = content_type in JSON_TYPES or content_type.endswith("+json")
    if not is_json and content_type != FORM_TYPE:
        raise UnsupportedMediaType(
            f"send application/json or {FORM_TYPE}, not {content_type or 'no Content-Type'}"
        )
    body = await read_body(request, settings.max_body_bytes)
    if is_json:
        events, batch = events_from_json(
            _parse_json(body),
            max_batch=settings.max_batch_events,
            max_data_bytes=settings.max_data_bytes,
        )
    else:
        events, batch = [event_from_form(body, max_data_bytes=settings.max_data_bytes)], False
    authorize_publish(grant, [event.topic for event in events])
    ids = await hub.publish_events(events)
    payload: dict[str, Any] = {"ids": ids} if batch else {"id": ids[0]}
    return web.json_response(payload, status=201)
