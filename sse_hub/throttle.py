"""Rate limits per client on publishes and new streams: ``429`` with ``Retry-After``.

The client is the token's subject when there is one, else its address: the
peer, or what a trusted proxy says in ``X-Forwarded-For``. IPv6 clients count
per /64, the block one subscriber line usually gets. Clients on loopback are
not limited unless ``--rate-limit-loopback`` says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from aiohttp import web

from sse_hub.auth import Grant
from sse_hub.config import Settings
from sse_hub.errors import TooManyRequests
from sse_hub.ratelimit import RateLimiter, address_key, client_address, is_loopback
from sse_hub.request_view import RequestView


class Throttle:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.publish = RateLimiter(settings.rate_publish) if settings.rate_publish else None
        self.connect = RateLimiter(settings.rate_connect) if settings.rate_connect else None
        self._trusted = settings.trusted_proxies
        self._limit_loopback = settings.rate_limit_loopback
        self._clock = clock

    def client_address(self, request: RequestView) -> str:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        return client_address(request.remote, forwarded, self._trusted)

    def check_publish(self, request: RequestView, grant: Grant | None) -> None:
        self._check(self.publish, request, grant, "publish requests")

    def check_connect(self, request: RequestView, grant: Grant | None) -> None:
        self._check(self.connect, request, grant, "new streams")

    def _check(
        self, limiter: RateLimiter | None, request: RequestView, grant: Grant | None, what: str
    ) -> None:
        if limiter is None:
            return
        address = self.client_address(request)
        if is_loopback(address) and not self._limit_loopback:
            return
        key = f"sub:{grant.subject}" if grant and grant.subject else "ip:" + address_key(address)
        wait_s = limiter.take(key, self._clock())
        if wait_s > 0:
            retry_after_s = max(1, math.ceil(wait_s))
            raise TooManyRequests(
                f"too many {what} from this client (limit {limiter.rate.per_s:g} a second, "
                f"bursts of {limiter.rate.burst}); retry in {retry_after_s} s",
                retry_after_s=retry_after_s,
            )


THROTTLE = web.AppKey("sse_hub.throttle", Throttle)
