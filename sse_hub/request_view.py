"""What the stream checks read of a request, whoever parsed it.

aiohttp's ``web.Request`` has all of it; so does the front door's
``StreamRequest`` (``front_door.py``), which serves plain stream requests
without building one. Authentication, rate limits, topics, resume points and
access lines read only these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from aiohttp import web
from aiohttp.http import HttpVersion
from multidict import MultiMapping


class RequestLine(Protocol):
    """What an access line says of a request (``web.BaseRequest`` has it too)."""

    @property
    def method(self) -> str: ...

    @property
    def raw_path(self) -> str: ...

    @property
    def headers(self) -> MultiMapping[str]: ...

    @property
    def remote(self) -> str | None: ...


class RequestView(RequestLine, Protocol):
    @property
    def app(self) -> web.Application: ...

    @property
    def version(self) -> HttpVersion: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def cookies(self) -> Mapping[str, str]: ...
