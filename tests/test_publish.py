"""POST /events: bodies, atomic batches, and bad input that changes nothing."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.sse_client import open_stream


async def post(server: TestServer, **kwargs: Any) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/events"), **kwargs) as response,
    ):
        text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return response.status, response.content_type, body


async def stored(db: asyncpg.Connection) -> list[tuple[int, str, str | None, str]]:
    rows = await db.fetch("SELECT id, topic, event, data FROM sse_hub.events ORDER BY id")
    return [(r["id"], r["topic"], r["event"], r["data"]) for r in rows]


async def test_json_object(hub: TestServer, db: asyncpg.Connection) -> None:
    status, ctype, body = await post(hub, json={"topic": "a", "data": "x", "event": "t"})
    assert (status, ctype, body) == (201, "application/json", {"id": 1})
    assert await stored(db) == [(1, "a", "t", "x")]


async def test_non_string_data_is_compact_json(hub: TestServer, db: asyncpg.Connection) -> None:
    for data in [{"a": [1, 2.5, None, True]}, 42, None, ["ü"]]:
        status, _, _ = await post(hub, json={"topic": "a", "data": data})
        assert status == 201
    assert [row[3] for row in await stored(db)] == [
        '{"a":[1,2.5,null,true]}',
        "42",
        "null",
        '["ü"]',
    ]


async def test_batch_is_atomic_and_ordered(hub: TestServer, db: asyncpg.Connection) -> None:
    batch = [{"topic": f"t{i}", "data": str(i)} for i in range(5)]
    status, _, body = await post(hub, json=batch)
    assert (status, body) == (201, {"ids": [1, 2, 3, 4, 5]})
    assert [row[3] for row in await stored(db)] == ["0", "1", "2", "3", "4"]
    bad = [{"topic": "ok", "data": "1"}, {"topic": "bad\n", "data": "2"}]
    status, _, body = await post(hub, json=bad)
    assert status == 422
    assert body["detail"].startswith("event 1: ")
    assert len(await stored(db)) == 5


async def test_form_encoded(hub: TestServer, db: asyncpg.Connection) -> None:
    status, _, body = await post(hub, data={"topic": "demo", "data": "hi", "event": "greet"})
    assert (status, body) == (201, {"id": 1})
    status, _, body = await post(hub, data={"topic": "demo", "data": "", "event": ""})
    assert (status, body) == (201, {"id": 2})
    assert await stored(db) == [(1, "demo", "greet", "hi"), (2, "demo", None, "")]


async def test_batch_of_the_limit(hub: TestServer, db: asyncpg.Connection) -> None:
    status, _, body = await post(hub, json=[{"topic": "t", "data": "x"}] * 1000)
    assert status == 201
    assert body["ids"] == list(range(1, 1001))


BAD_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("malformed json", {"data": b"{nope", "headers": {"Content-Type": "application/json"}}, 400),
    (
        "NaN",
        {"data": b'{"topic":"a","data":NaN}', "headers": {"Content-Type": "application/json"}},
        400,
    ),
    (
        "bad utf-8",
        {"data": b'{"topic":"\xff","data":"x"}', "headers": {"Content-Type": "application/json"}},
        400,
    ),
    ("text/plain", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
    ("no content type", {"data": b"hello", "headers": {"Content-Type": ""}}, 415),
    (
        "multipart",
        {"data": aiohttp.FormData({"topic": "a", "data": "b"}, default_to_multipart=True)},
        415,
    ),
    ("scalar json", {"json": "just a string"}, 422),
    ("missing topic", {"json": {"data": "x"}}, 422),
    ("missing data", {"json": {"topic": "a"}}, 422),
    ("unknown field", {"json": {"topic": "a", "data": "x", "evnet": "t"}}, 422),
    ("topic newline", {"json": {"topic": "a\nb", "data": "x"}}, 422),
    ("topic carriage return", {"json": {"topic": "a\rid: 5", "data": "x"}}, 422),
    ("event newline", {"json": {"topic": "a", "data": "x", "event": "e\ndata: injected"}}, 422),
    ("topic too long", {"json": {"topic": "x" * 257, "data": "x"}}, 422),
    ("topic not a string", {"json": {"topic": 5, "data": "x"}}, 422),
    ("NUL in data", {"json": {"topic": "a", "data": "x\u0000y"}}, 422),
    ("empty batch", {"json": []}, 422),
    ("batch of non-objects", {"json": [1, 2]}, 422),
    ("data too large", {"json": {"topic": "a", "data": "x" * (256 * 1024 + 1)}}, 413),
    (
        "body too large",
        {
            "data": io.BytesIO(json.dumps([{"topic": "a", "data": "x" * 200_000}] * 6).encode()),
            "headers": {"Content-Type": "application/json"},
        },
        413,
    ),
    ("batch too large", {"json": [{"topic": "a", "data": ""}] * 1001}, 413),
    ("form without data", {"data": {"topic": "a"}}, 422),
    ("form unknown field", {"data": {"topic": "a", "data": "x", "id": "5"}}, 422),
    ("form control chars", {"data": {"topic": "a\x00", "data": "x"}}, 422),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
async def test_bad_input_is_a_problem_and_stores_nothing(
    hub: TestServer, db: asyncpg.Connection, name: str, kwargs: dict[str, Any], status: int
) -> None:
    await post(hub, json={"topic": "keep", "data": "before"})
    stream = await open_stream(hub.port, "/events?topic=keep")
    try:
        await stream.started()
        got_status, ctype, body = await post(hub, **kwargs)
        assert got_status == status, body
        assert ctype == "application/problem+json"
        assert body["status"] == status
        assert body["title"]
        assert body["type"]
        assert body["detail"]
        assert await stored(db) == [(1, "keep", None, "before")]
        # the hub still works afterwards
        assert (await post(hub, json={"topic": "keep", "data": "after"}))[0] == 201
        assert (await stream.next_event()).data == "after"
    finally:
        stream.close()


async def test_unknown_route_and_method_are_problems(hub: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(hub.make_url("/nope")) as response:
            assert response.status == 404
            assert response.content_type == "application/problem+json"
        async with session.delete(hub.make_url("/events")) as response:
            assert response.status == 405
            assert response.content_type == "application/problem+json"
            assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("depth", [1000, 100_000])
async def test_deeply_nested_json_is_a_400_and_stores_nothing(
    hub: TestServer, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    for body in (
        "[" * depth + "]" * depth,
        '{"topic": "t", "data": ' + "[" * depth + "]" * depth + "}",
    ):
        status, ctype, problem = await post(
            hub, data=body, headers={"Content-Type": "application/json"}
        )
        assert (status, ctype) == (400, "application/problem+json"), problem
        assert "deeper" in problem["detail"]
    assert await stored(db) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
