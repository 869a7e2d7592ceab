"""Domain errors.

Each error that a client can cause carries the HTTP status and RFC 9457 title it
maps to, so handlers turn any of them into one ``application/problem+json``
answer without a table of special cases. Nothing here knows about aiohttp.
"""

from __future__ import annotations

from typing import ClassVar


class HubError(Exception):
    """A request the hub refuses; ``detail`` is shown to the client."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad Request"
    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedRequest(HubError):
    status = 400
    title = "Bad Request"
    slug = "malformed-request"


class Unauthorized(HubError):
    """No usable token. ``error`` is the RFC 6750 code for ``WWW-Authenticate``.

    A request without any token gets no error code (RFC 6750, section 3.1); a
    token that is malformed, badly signed or expired gets ``invalid_token``.
    """

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        super().__init__(detail)
        self.error = error


class Forbidden(HubError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(HubError):
    status = 404
    title = "Not Found"
    slug = "not-found"


class PayloadTooLarge(HubError):
    status = 413
    title = "Content Too Large"
    slug = "payload-too-large"


class UnsupportedMediaType(HubError):
    status = 415
    title = "Unsupported Media Type"
    slug = "unsupported-media-type"


class RangeNotSatisfiable(HubError):
    status = 416
    title = "Range Not Satisfiable"
    slug = "range-not-satisfiable"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail)
        self.size = size


class InvalidInput(HubError):
    status = 422
    title = "Unprocessable Content"
    slug = "invalid-input"


class TooManyRequests(HubError):
    status = 429
    title = "Too Many Requests"
    slug = "too-many-requests"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(HubError):
    status = 503
    title = "Service Unavailable"
    slug = "unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ConfigError(Exception):
    """A bad setting; the process stops at start with this one line."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message
