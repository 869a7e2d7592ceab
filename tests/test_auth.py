"""Tokens: verification, claims to grants, and the hub's answers to bad tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sse_hub.auth import (
    JWT_LEEWAY_S,
    VERIFIER,
    Grant,
    Verifier,
    authorize_download,
    mint_token,
)
from sse_hub.config import Settings
from sse_hub.errors import ConfigError, Unauthorized
from sse_hub.events import TopicPattern
from sse_hub.keys import HUB
from sse_hub.problems import answering_problems
from tests.conftest import HubFactory, app_of
from tests.sse_client import open_stream
from tests.test_publish import post, stored

KEY = "test-key-" + "k" * 32
OTHER_KEY = "other-key-" + "o" * 32


def token(claims: dict[str, Any] | None = None, *, key: Any = KEY, algorithm: str = "HS256") -> str:
    body = {"sub": "tester", "exp": int(time.time()) + 600}
    body.update(claims if claims is not None else {})
    return jwt.encode(body, key, algorithm=algorithm)


def _part(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _signing_input(alg: str, claims: dict[str, Any]) -> bytes:
    body = {"sub": "tester", "exp": int(time.time()) + 600, **claims}
    header = json.dumps({"alg": alg, "typ": "JWT"}).encode()
    return _part(header) + b"." + _part(json.dumps(body).encode())


def forged_hs256(claims: dict[str, Any], secret: bytes) -> str:
    """HS256 "signed" with ``secret`` by hand (PyJWT refuses a PEM as an HMAC key)."""
    signing_input = _signing_input("HS256", claims)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _part(signature)).decode()


def alg_none(claims: dict[str, Any]) -> str:
    """An unsigned token (``alg: none``): accepted by careless verifiers."""
    return (_signing_input("none", claims) + b".").decode()


def allowing(**grants: Any) -> dict[str, Any]:
    return {"sse_hub": grants}


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _pem(key: Any) -> str:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def _key_file(key: Any, folder: Path) -> Path:
    """``--jwt-public-key`` names a file: ``key``'s public half, written in ``folder``."""
    path = folder / f"key-{id(key)}.pub.pem"
    path.write_text(_pem(key), encoding="ascii")
    return path


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())

# ---- verification, without a hub


def test_a_valid_token_becomes_a_grant() -> None:
    verifier = Verifier(KEY, ["HS256"])
    grant = verifier.verify(token(allowing(publish=["a/*"], subscribe=["b", "*"], files=["r/*"])))
    assert grant == Grant(
        subject="tester",
        publish=(TopicPattern("a/*"),),
        subscribe=(TopicPattern("b"), TopicPattern("*")),
        files=(TopicPattern("r/*"),),
    )
    assert verifier.verify(token({})) == Grant(subject="tester")  # valid, allows nothing


def test_expiry_has_a_small_leeway() -> None:
    verifier = Verifier(KEY, ["HS256"])
    now = int(time.time())
    assert verifier.verify(token({"exp": now - JWT_LEEWAY_S + 3}))
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(token({"exp": now - JWT_LEEWAY_S - 5}))
    assert verifier.verify(token({"nbf": now + JWT_LEEWAY_S - 3}))
    with pytest.raises(Unauthorized, match="not valid yet"):
        verifier.verify(token({"nbf": now + JWT_LEEWAY_S + 30}))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(token(key=OTHER_KEY), id="wrong key"),
        pytest.param(alg_none({}), id="alg none"),
        pytest.param(token(key=RSA_KEY, algorithm="RS256"), id="RS256 for an HS256 hub"),
        pytest.param("not.a.token", id="garbage"),
        pytest.param(token(allowing(publish="a")), id="claim not a list"),
        pytest.param(token(allowing(subscribe=["ok", 5])), id="pattern not a string"),
        pytest.param(token(allowing(publish=["bad\ntopic"])), id="control character"),
        pytest.param(token({"sse_hub": ["publish"]}), id="claims not an object"),
    ],
)
def test_bad_tokens_are_unauthorized(bad: str) -> None:
    with pytest.raises(Unauthorized) as info:
        Verifier(KEY, ["HS256"]).verify(bad)
    assert info.value.error == "invalid_token"


def test_public_keys_choose_their_algorithm(tmp_path: Path) -> None:
    rsa_verifier = Verifier.from_settings(Settings(jwt_public_key=_key_file(RSA_KEY, tmp_path)))
    ec_verifier = Verifier.from_settings(Settings(jwt_public_key=_key_file(EC_KEY, tmp_path)))
    assert rsa_verifier is not None
    assert ec_verifier is not None
    assert rsa_verifier.algorithms == ["RS256"]
    assert ec_verifier.algorithms == ["ES256"]
    assert rsa_verifier.verify(token(key=RSA_KEY, algorithm="RS256")).subject == "tester"
    assert ec_verifier.verify(token(key=EC_KEY, algorithm="ES256")).subject == "tester"
    for verifier, wrong in [
        (rsa_verifier, token(key=EC_KEY, algorithm="ES256")),
        (ec_verifier, token(key=RSA_KEY, algorithm="RS256")),
        # the classic confusion: HS256 "signed" with the public key as the secret
        (rsa_verifier, forged_hs256({}, _pem(RSA_KEY).encode())),
    ]:
        with pytest.raises(Unauthorized):
            verifier.verify(wrong)
    assert Verifier(KEY, ["HS256"]).verify(forged_hs256({}, KEY.encode()))  # the forger works


def test_unusable_public_keys_stop_the_hub(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    edwards = ed25519.Ed25519PrivateKey.generate()
    for key in (small, edwards):
        with pytest.raises(ConfigError, match="--jwt-public-key"):
            Verifier.from_settings(Settings(jwt_public_key=_key_file(key, tmp_path)))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    for path in (tmp_path / "missing.pem", not_pem, tmp_path):
        with pytest.raises(ConfigError, match="--jwt-public-key"):
            Verifier.from_settings(Settings(jwt_public_key=path))
    assert Verifier.from_settings(Settings()) is None


def test_minted_tokens_verify(tmp_path: Path) -> None:
    hs = mint_token(key=KEY, publish=["a"], subscribe=["b/*"], subject="me", ttl_s=60)
    grant = Verifier(KEY, ["HS256"]).verify(hs)
    assert grant.subject == "me"
    assert grant.publish == (TopicPattern("a"),)
    claims = jwt.decode(hs, KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 60
    pem = EC_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    es = mint_token(key="", private_key_pem=pem, files=["r/*"])
    verifier = Verifier.from_settings(Settings(jwt_public_key=_key_file(EC_KEY, tmp_path)))
    assert verifier is not None
    assert verifier.verify(es).files == (TopicPattern("r/*"),)


# ---- the hub's answers


@pytest.fixture
async def secured(start_hub: HubFactory) -> TestServer:
    return await start_hub(jwt_key=KEY)


PUBLISHER = token(allowing(publish=["keep", "orders/*"], subscribe=["keep"]))
EVENT = {"topic": "orders/1", "data": "x"}

BAD_PUBLISHES: list[tuple[str, dict[str, Any], int, str]] = [
    # (name, request kwargs, status, expected WWW-Authenticate or "")
    ("missing", {"json": EVENT}, 401, 'Bearer realm="sse_hub"'),
    (
        "wrong signature",
        {"json": EVENT, "headers": bearer(token(allowing(publish=["*"]), key=OTHER_KEY))},
        401,
        'Bearer realm="sse_hub", error="invalid_token"',
    ),
    (
        "expired",
        {"json": EVENT, "headers": bearer(token({"exp": 1, **allowing(publish=["*"])}))},
        401,
        'Bearer realm="sse_hub", error="invalid_token"',
    ),
    (
        "not yet valid",
        {
            "json": EVENT,
            "headers": bearer(token({"nbf": int(time.time()) + 3600, **allowing(publish=["*"])})),
        },
        401,
        'Bearer realm="sse_hub", error="invalid_token"',
    ),
    (
        "alg none",
        {
            "json": EVENT,
            "headers": bearer(alg_none(allowing(publish=["*"]))),
        },
        401,
        'Bearer realm="sse_hub", error="invalid_token"',
    ),
    ("garbage", {"json": EVENT, "headers": bearer("abc.def.ghi")}, 401, ""),
    ("empty bearer", {"json": EVENT, "headers": {"Authorization": "Bearer "}}, 401, ""),
    ("basic auth", {"json": EVENT, "headers": {"Authorization": "Basic dXNlcjpwdw=="}}, 401, ""),
    ("malformed claims", {"json": EVENT, "headers": bearer(token(allowing(publish="*")))}, 401, ""),
    ("token in a cookie", {"json": EVENT, "cookies": {"sse_hub_token": PUBLISHER}}, 401, ""),
    ("token in the query", {"json": EVENT, "params": {"access_token": PUBLISHER}}, 401, ""),
    (
        "subscribe-only claims",
        {"json": EVENT, "headers": bearer(token(allowing(subscribe=["*"])))},
        403,
        "",
    ),
    (
        "topic not allowed",
        {"json": {"topic": "users/1", "data": "x"}, "headers": bearer(PUBLISHER)},
        403,
        "",
    ),
    (
        "one topic of a batch not allowed",
        {"json": [EVENT, {"topic": "users/1", "data": "x"}], "headers": bearer(PUBLISHER)},
        403,
        "",
    ),
    (
        "prefix is not the topic",
        {"json": {"topic": "orders", "data": "x"}, "headers": bearer(PUBLISHER)},
        403,
        "",
    ),
    (
        "authorised but invalid",
        {"json": {"topic": "orders/1\n", "data": "x"}, "headers": bearer(PUBLISHER)},
        422,
        "",
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "challenge"), BAD_PUBLISHES, ids=[b[0] for b in BAD_PUBLISHES]
)
async def test_bad_tokens_publish_nothing(
    secured: TestServer,
    db: asyncpg.Connection,
    name: str,
    kwargs: dict[str, Any],
    status: int,
    challenge: str,
) -> None:
    assert (
        await post(secured, json={"topic": "keep", "data": "before"}, headers=bearer(PUBLISHER))
    )[0] == 201
    stream = await open_stream(secured.port, "/events?topic=keep", headers=bearer(PUBLISHER))
    try:
        assert stream.status == 200
        await stream.started()
        async with (
            aiohttp.ClientSession() as session,
            session.post(secured.make_url("/events"), **kwargs) as response,
        ):
            body = await response.json(content_type=None)
            assert response.status == status, body
            assert response.content_type == "application/problem+json"
            assert {"type", "title", "status", "detail"} <= set(body)
            assert body["status"] == status
            if status == 401:
                assert response.headers["WWW-Authenticate"].startswith('Bearer realm="sse_hub"')
            if challenge:
                assert response.headers["WWW-Authenticate"] == challenge
        assert await stored(db) == [(1, "keep", None, "before")]
        # the hub still works afterwards
        ok = await post(secured, json={"topic": "keep", "data": "after"}, headers=bearer(PUBLISHER))
        assert ok[0] == 201
        assert (await stream.next_event()).data == "after"
    finally:
        stream.close()


SUBSCRIBER = token(allowing(subscribe=["orders/*", "news"]))

BAD_SUBSCRIPTIONS: list[tuple[str, str, dict[str, str], int]] = [
    ("missing", "/events?topic=news", {}, 401),
    ("expired", "/events?topic=news", bearer(token({"exp": 1, **allowing(subscribe=["*"])})), 401),
    (
        "wrong key",
        "/events?topic=news",
        bearer(token(allowing(subscribe=["*"]), key=OTHER_KEY)),
        401,
    ),
    ("bad cookie", "/events?topic=news", {"Cookie": "sse_hub_token=nope"}, 401),
    ("bad query token", "/events?topic=news&access_token=nope", {}, 401),
    ("publish-only claims", "/events?topic=news", bearer(token(allowing(publish=["*"]))), 403),
    ("topic not allowed", "/events?topic=sport", bearer(SUBSCRIBER), 403),
    ("one of several not allowed", "/events?topic=news&topic=sport", bearer(SUBSCRIBER), 403),
    ("everything from a prefix grant", "/events?topic=*", bearer(SUBSCRIBER), 403),
    ("wider prefix", "/events?topic=ord*", bearer(SUBSCRIBER), 403),
    ("missing topic", "/events", bearer(SUBSCRIBER), 400),
]


@pytest.mark.parametrize(
    ("name", "path", "headers", "status"), BAD_SUBSCRIPTIONS, ids=[b[0] for b in BAD_SUBSCRIPTIONS]
)
async def test_bad_tokens_open_no_stream(
    secured: TestServer, name: str, path: str, headers: dict[str, str], status: int
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(secured.make_url(path), headers=headers) as response,
    ):
        body = await response.json(content_type=None)
        assert response.status == status, body
        assert response.content_type == "application/problem+json"
        assert body["status"] == status
        assert body["detail"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/events?topic=news&topic=orders/eu/*", bearer(SUBSCRIBER)),
        ("/events?topic=orders/1", {"Cookie": f"sse_hub_token={SUBSCRIBER}"}),
        (f"/events?topic=news&access_token={SUBSCRIBER}", {}),
        # the header wins over a bad cookie
        ("/events?topic=news", {**bearer(SUBSCRIBER), "Cookie": "sse_hub_token=nope"}),
    ],
)
async def test_a_token_from_header_cookie_or_query_subscribes(
    secured: TestServer, path: str, headers: dict[str, str]
) -> None:
    stream = await open_stream(secured.port, path, headers=headers)
    try:
        assert stream.status == 200
        topic = "news" if "news" in path else "orders/1"
        status, _, _ = await post(
            secured,
            json={"topic": topic, "data": "hi"},
            headers=bearer(token(allowing(publish=["*"]))),
        )
        assert status == 201
        assert (await stream.next_event()).data == "hi"
    finally:
        stream.close()


async def test_operations_and_dashboard_need_no_token(secured: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/metrics", "/"):
            async with session.get(secured.make_url(path)) as response:
                assert response.status == 200, path


async def test_public_key_hub(start_hub: HubFactory, tmp_path: Path) -> None:
    hub = await start_hub(jwt_public_key=_key_file(EC_KEY, tmp_path))
    good = token(allowing(publish=["t"]), key=EC_KEY, algorithm="ES256")
    assert (await post(hub, json={"topic": "t", "data": "x"}, headers=bearer(good)))[0] == 201
    forged = forged_hs256(allowing(publish=["t"]), _pem(EC_KEY).encode())
    assert (await post(hub, json={"topic": "t", "data": "x"}, headers=bearer(forged)))[0] == 401


# ---- downloads


async def _download_server(settings: Settings) -> TestServer:
    async def download(request: web.Request) -> web.Response:
        authorize_download(request, request.match_info["path"])
        return web.Response(text="file")

    app = web.Application()
    verifier = Verifier.from_settings(settings)
    if verifier is not None:
        app[VERIFIER] = verifier
    app.router.add_get("/files/{path:.+}", answering_problems(download))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_authorize_download() -> None:
    server = await _download_server(Settings(jwt_key=KEY))
    open_server = await _download_server(Settings())
    reports = token(allowing(files=["reports/*"]))
    cases = [
        (server, "/files/reports/2024/q1.pdf", bearer(reports), 200),
        (server, "/files/reports/q1.pdf", {"Cookie": f"sse_hub_token={reports}"}, 200),
        (server, f"/files/reports/q1.pdf?access_token={reports}", {}, 200),
        (server, "/files/secret.txt", bearer(reports), 403),
        (server, "/files/reports.pdf", bearer(reports), 403),
        (server, "/files/reports/q1.pdf", bearer(token(allowing(subscribe=["*"]))), 403),
        (server, "/files/reports/q1.pdf", {}, 401),
        (server, "/files/reports/q1.pdf", bearer(token(key=OTHER_KEY)), 401),
        (open_server, "/files/anything", {}, 200),
    ]
    try:
        async with aiohttp.ClientSession() as session:
            for target, path, headers, status in cases:
                async with session.get(target.make_url(path), headers=headers) as response:
                    assert response.status == status, (path, await response.text())
    finally:
        await server.close()
        await open_server.close()


async def test_the_files_endpoint_honours_tokens(start_hub: HubFactory, tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "q1.txt").write_bytes(b"quarterly")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    hub = await start_hub(jwt_key=KEY, files_dir=tmp_path)
    reports = token(allowing(files=["reports/*"]))
    cases = [
        ("/files/reports/q1.txt", bearer(reports), 200),
        ("/files/reports/q1.txt", {"Cookie": f"sse_hub_token={reports}"}, 200),
        (f"/files/reports/q1.txt?access_token={reports}", {}, 200),
        ("/files/reports/q1.txt", {}, 401),
        ("/files/reports/q1.txt", bearer(token(allowing(subscribe=["*"]))), 403),
        ("/files/secret.txt", bearer(reports), 403),
        ("/files/reports/missing.txt", {}, 401),  # nothing is revealed without a token
        ("/files/reports/missing.txt", bearer(reports), 404),
    ]
    async with aiohttp.ClientSession() as session:
        for path, headers, status in cases:
            async with session.get(hub.make_url(path), headers=headers) as response:
                body = await response.read()
                assert response.status == status, (path, body)
                if status == 200:
                    assert body == b"quarterly"
                else:
                    assert response.content_type == "application/problem+json"
    counters = app_of(hub)[HUB].counters
    assert counters.file_bytes_served == 3 * len(b"quarterly")


async def test_download_authorisation_follows_symlinks_to_the_file_served(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    for folder in ("pub", "priv", "pub2"):
        (tmp_path / folder).mkdir()
    (tmp_path / "priv" / "secret.txt").write_bytes(b"secret")
    (tmp_path / "pub2" / "open.txt").write_bytes(b"open")
    (tmp_path / "pub" / "link").symlink_to("../priv/secret.txt")
    (tmp_path / "pub" / "dir").symlink_to("../priv", target_is_directory=True)
    (tmp_path / "pub" / "fine").symlink_to("../pub2/open.txt")
    hub = await start_hub(jwt_key=KEY, files_dir=tmp_path)
    pub = bearer(token(allowing(files=["pub/*"])))
    both = bearer(token(allowing(files=["pub/*", "pub2/*"])))
    cases = [
        ("/files/pub/link", pub, 403, None),  # the link's target is not granted
        ("/files/pub/dir/secret.txt", pub, 403, None),  # nor through a linked directory
        ("/files/pub/fine", pub, 403, None),
        ("/files/pub/fine", both, 200, b"open"),  # link and target both granted
    ]
    async with aiohttp.ClientSession() as session:
        for path, headers, status, body in cases:
            async with session.get(hub.make_url(path), headers=headers) as response:
                got = await response.read()
                assert response.status == status, (path, got)
                if body is not None:
                    assert got == body
                else:  # neither the file nor where the link leads is revealed
                    assert response.content_type == "application/problem+json"
                    assert b"priv" not in got


@pytest.mark.parametrize(("allow", "status"), [(False, 401), (True, 201)])
async def test_tokens_without_exp_need_the_operators_consent(
    start_hub: HubFactory, db: asyncpg.Connection, allow: bool, status: int
) -> None:
    server = await start_hub(jwt_key=KEY, allow_tokens_without_exp=allow)
    forever = jwt.encode({"sub": "t", **allowing(publish=["*"])}, KEY, algorithm="HS256")
    got, _, body = await post(server, json={"topic": "t", "data": "x"}, headers=bearer(forever))
    assert got == status, body
    if not allow:
        assert "'exp' claim" in body["detail"]
        assert await stored(db) == []
