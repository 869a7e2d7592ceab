"""Token buckets per client, in a table whose size is bounded, and who the client is.

Each client (a token's subject, else its address) has a bucket of ``burst``
tokens that refills at ``per_s`` tokens a second; a request takes one token or
is refused with the time until one is back. The table forgets a bucket once it
has been idle long enough to be full again (forgetting it changes nothing), and
past ``max_clients`` it forgets the least recently seen first, so a flood of
made-up client keys costs bounded memory. Pure code: time is passed in.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_CLIENTS = 100_000
IPV6_CLIENT_PREFIX = 64  # one subscriber line usually gets a /64: count it as one client

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_s`` requests a second on average, at most ``burst`` at once."""

    per_s: float
    burst: int

    def __str__(self) -> str:
        return f"{self.per_s:g}:{self.burst}"


def parse_rate(text: str) -> Rate | None:
    """``20:100`` (20 a second, bursts of 100), ``20`` (burst twice the rate) or ``off``."""
    text = text.strip().lower()
    if text in {"off", "0", "none"}:
        return None
    per_s_text, colon, burst_text = text.partition(":")
    try:
        per_s = float(per_s_text)
        burst = int(burst_text) if colon else 0
    except ValueError:
        raise ValueError(
            f"expected RATE[:BURST] like 20:100 (20 a second, bursts of 100) or off, got {text!r}"
        ) from None
    if not (math.isfinite(per_s) and 0 < per_s <= 1_000_000):
        raise ValueError(f"the rate must be positive, got {text!r}")
    if not colon:
        burst = max(1, math.ceil(2 * per_s))
    if not 1 <= burst <= 10_000_000:
        raise ValueError(f"the burst must be positive, got {text!r}")
    return Rate(per_s, burst)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """Token buckets keyed by client; bounded in size, idle buckets expire."""

    def __init__(self, rate: Rate, *, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.rate = rate
        self.max_clients = max_clients
        # A bucket idle this long has refilled completely: dropping it is free.
        self.idle_s = rate.burst / rate.per_s
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now_s: float) -> float:
        """Take one token for ``client``: ``0.0`` when allowed, else seconds until allowed."""
        self._expire(now_s)
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(float(self.rate.burst), now_s)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now_s - bucket.updated_s)
            bucket.tokens = min(float(self.rate.burst), bucket.tokens + elapsed * self.rate.per_s)
            bucket.updated_s = now_s
            self._buckets.move_to_end(client)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        self.refused += 1
        return (1.0 - bucket.tokens) / self.rate.per_s

    def _expire(self, now_s: float) -> None:
        # Least recently seen first: stop at the first bucket still in use.
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now_s - oldest.updated_s < self.idle_s:
                return
            buckets.popitem(last=False)


def client_address(
    peer: str | None, forwarded_for: list[str], trusted: tuple[IPNetwork, ...]
) -> str:
    """The client's address: the peer, or, from trusted proxies, what they forwarded.

    ``X-Forwarded-For`` is read from the right (each proxy appends the address it
    saw) and skips proxies we trust; the first other address is the client.
    Anything left of it was written by the client itself and is not believed.
    """
    address = peer or "unknown"
    if not forwarded_for or not _in(address, trusted):
        return address
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if not _is_ip(hop):
            return address  # garbled: keep the last address a trusted proxy vouched for
        address = hop
        if not _in(hop, trusted):
            return hop
    return address


def address_key(address: str) -> str:
    """The rate-limit key of an address: itself, or its /64 for IPv6."""
    ip = _ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


@functools.lru_cache(maxsize=4096)  # asked for every stream and publish; clients repeat
def is_loopback(address: str) -> bool:
    """``localhost``, 127.0.0.0/8, ``::1`` (also IPv4-mapped): a client or a bind address."""
    if address == "localhost":
        return True
    ip = _ip(address)
    return ip is not None and ip.is_loopback


# Parsing an address costs a few µs and every request does it; clients repeat.
@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return ip


def _is_ip(text: str) -> bool:
    return _ip(text) is not None


def _in(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in networks)
