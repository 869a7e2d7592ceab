"""Rate limits end to end: 429 with Retry-After, per client, loopback exempt, proxies believed."""

from __future__ import annotations

import time

import aiohttp
import asyncpg
import jwt
from aiohttp.test_utils import TestServer

from sse_hub.ratelimit import Rate
from tests.conftest import HubFactory
from tests.sse_client import open_stream
from tests.test_publish import stored

# One token a hundred seconds: the burst is all a test gets, however slow the machine.
SLOW = Rate(per_s=0.01, burst=2)
KEY = "throttle-test-key-" + "k" * 32


async def publish(
    server: TestServer, data: str, *, forwarded_for: str | None = None, **headers: str
) -> aiohttp.ClientResponse:
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.make_url("/events"), json={"topic": "t", "data": data}, headers=headers
        ) as response,
    ):
        await response.read()
        return response


def assert_refused(response: aiohttp.ClientResponse) -> None:
    assert response.status == 429
    assert response.content_type == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 100


async def test_publishes_are_limited_per_client(
    start_hub: HubFactory, db: asyncpg.Connection
) -> None:
    hub = await start_hub(rate_publish=SLOW)
    statuses = [(await publish(hub, f"a{n}", forwarded_for="203.0.113.5")).status for n in range(3)]
    assert statuses == [201, 201, 429]
    refused = await publish(hub, "refused", forwarded_for="203.0.113.5")
    assert_refused(refused)
    # someone else is not affected, and neither is loopback (no limit there by default)
    assert (await publish(hub, "b", forwarded_for="198.51.100.7")).status == 201
    for n in range(5):
        assert (await publish(hub, f"local {n}")).status == 201
    assert "refused" not in [row[3] for row in await stored(db)]
    assert len(await stored(db)) == 8


async def test_the_proxy_chain_is_read_from_the_right(start_hub: HubFactory) -> None:
    hub = await start_hub(rate_publish=SLOW)
    # a client that makes up addresses left of the one our proxy saw gains nothing
    for lie in ["1.1.1.1", "2.2.2.2", "3.3.3.3"]:
        response = await publish(hub, lie, forwarded_for=f"{lie}, 203.0.113.9")
    assert response.status == 429


async def test_untrusted_peers_cannot_choose_their_address(start_hub: HubFactory) -> None:
    hub = await start_hub(rate_publish=SLOW, trusted_proxies=(), rate_limit_loopback=True)
    statuses = [
        (await publish(hub, str(n), forwarded_for=f"203.0.113.{n}")).status for n in range(3)
    ]
    assert statuses == [201, 201, 429]  # all of them are 127.0.0.1


async def test_a_token_subject_is_one_client_wherever_it_comes_from(
    start_hub: HubFactory,
) -> None:
    hub = await start_hub(jwt_key=KEY, rate_publish=SLOW)

    def bearer(subject: str) -> str:
        claims = {"sub": subject, "exp": int(time.time()) + 600, "sse_hub": {"publish": ["*"]}}
        return "Bearer " + jwt.encode(claims, KEY, algorithm="HS256")

    alice = [
        (await publish(hub, "x", forwarded_for=f"203.0.113.{n}", Authorization=bearer("alice")))
        for n in range(3)
    ]
    assert [response.status for response in alice] == [201, 201, 429]
    bob = await publish(hub, "x", forwarded_for="203.0.113.1", Authorization=bearer("bob"))
    assert bob.status == 201
    # a failed authentication is a 401, not a use of someone's bucket
    anonymous = await publish(hub, "x", forwarded_for="203.0.113.1")
    assert anonymous.status == 401


async def test_new_streams_are_limited_and_open_ones_keep_going(start_hub: HubFactory) -> None:
    hub = await start_hub(rate_connect=SLOW)
    headers = {"X-Forwarded-For": "203.0.113.5"}
    first = await open_stream(hub.port, "/events?topic=t", headers=headers)
    second = await open_stream(hub.port, "/events?topic=t", headers=headers)
    third = await open_stream(hub.port, "/events?topic=t", headers=headers)
    try:
        assert (first.status, second.status, third.status) == (200, 200, 429)
        assert third.headers["content-type"].startswith("application/problem+json")
        assert int(third.headers["retry-after"]) >= 1
        local = await open_stream(hub.port, "/events?topic=t")
        local.close()
        assert local.status == 200
        assert (await publish(hub, "still flowing")).status == 201
        for stream in (first, second):
            assert (await stream.next_event()).data == "still flowing"
    finally:
        for stream in (first, second, third):
            stream.close()
