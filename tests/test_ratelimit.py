"""Token buckets, the bounded table of clients, and who the client is."""

from __future__ import annotations

import ipaddress

import pytest

from sse_hub.ratelimit import Rate, RateLimiter, address_key, client_address, parse_rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20:100", Rate(20.0, 100)),
        ("0.5:3", Rate(0.5, 3)),
        ("10", Rate(10.0, 20)),
        ("0.2", Rate(0.2, 1)),
        ("off", None),
        ("0", None),
    ],
)
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["fast", "10:", "10:x", "-1:5", "10:0", "nan", "inf", "inf:3", ":5"]
)
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError, match=r"RATE\[:BURST\]|positive"):
        parse_rate(text)


def test_burst_then_steady_rate() -> None:
    limiter = RateLimiter(Rate(per_s=2.0, burst=3))
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(0.5)  # a token every half second
    assert limiter.take("a", 0.25) == pytest.approx(0.25)
    assert limiter.take("a", 0.5) == 0.0
    assert limiter.take("b", 0.5) == 0.0  # clients do not share buckets
    assert limiter.refused == 2


def test_refill_never_exceeds_the_burst() -> None:
    limiter = RateLimiter(Rate(per_s=1.0, burst=2))
    limiter.take("a", 0.0)
    assert [limiter.take("a", 1000.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a", 1000.0) > 0


def test_idle_buckets_expire() -> None:
    limiter = RateLimiter(Rate(per_s=10.0, burst=5))  # full again after 0.5 s
    for n in range(100):
        limiter.take(f"client-{n}", 0.0)
    assert len(limiter) == 100
    limiter.take("late", 0.4)
    assert len(limiter) == 101
    limiter.take("later", 0.6)
    assert len(limiter) == 2  # everyone idle since 0.0 was full again, so forgotten


def test_the_table_is_bounded() -> None:
    limiter = RateLimiter(Rate(per_s=0.001, burst=1), max_clients=50)
    for n in range(10_000):
        limiter.take(f"made-up-{n}", n * 0.001)
    assert len(limiter) == 50
    # the most recently seen are the ones kept
    assert limiter.take("made-up-9999", 10.0) > 0


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.7", [], "203.0.113.7"),
        ("203.0.113.7", ["1.2.3.4"], "203.0.113.7"),  # not a trusted proxy: ignored
        ("10.0.0.2", ["198.51.100.9"], "198.51.100.9"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.9"], "198.51.100.9"),  # left part is the client's lie
        ("10.0.0.2", ["198.51.100.9, 10.0.0.3"], "198.51.100.9"),  # two trusted hops
        ("10.0.0.2", ["6.6.6.6", "198.51.100.9"], "198.51.100.9"),  # repeated header
        ("10.0.0.2", ["10.0.0.9, 10.0.0.3"], "10.0.0.9"),  # only proxies: the farthest
        ("10.0.0.2", ["garbage, 198.51.100.9"], "198.51.100.9"),
        ("10.0.0.2", ["198.51.100.9, garbage"], "10.0.0.2"),
        ("::1", ["2001:db8::5"], "2001:db8::5"),
        ("::ffff:10.0.0.2", ["198.51.100.9"], "198.51.100.9"),
        (None, ["198.51.100.9"], "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


def test_ipv6_clients_count_per_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"
