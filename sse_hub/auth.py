"""Authorisation with JSON Web Tokens: who may publish, subscribe to and download what.

With ``--jwt-key`` (HS256) or ``--jwt-public-key`` (RS256 or ES256, chosen by
the key's type) every request to ``/events`` and ``/files`` needs a token whose
claims list topic patterns::

    {"sub": "dashboard-7", "exp": 1767225600,
     "sse_hub": {"publish": ["orders/*"], "subscribe": ["orders/*", "news"],
                 "files": ["reports/*"]}}

Patterns match like subscriptions (``x/*``, ``*``). Only the algorithms of the
configured key are accepted, so ``alg: none`` and HS256-signed-with-the-public-key
tokens fail. No token, or one that is malformed, badly signed, expired or not
yet valid: ``401``; a valid token that does not allow what is asked: ``403``.
Without a key the hub is open and every check here allows everything.

Publishing takes the token from ``Authorization: Bearer`` only: a cookie would
let any web page make a visitor's browser publish (a cross-site form POST).
Streams and downloads also take the ``sse_hub_token`` cookie and the
``access_token`` query value, which ``EventSource`` and plain links can send.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from sse_hub.config import Settings
from sse_hub.errors import ConfigError, Forbidden, HubError, Unauthorized
from sse_hub.events import TopicPattern, any_matches, first_uncovered, validate_topic
from sse_hub.request_view import RequestView

JWT_LEEWAY_S = 10  # clock skew forgiven on exp and nbf
HMAC_ALGORITHMS = ("HS256",)
RSA_ALGORITHMS = ("RS256",)
EC_ALGORITHMS = ("ES256",)
MIN_RSA_KEY_BITS = 2048
CLAIMS_KEY = "sse_hub"
TOKEN_COOKIE = "sse_hub_token"
TOKEN_QUERY = "access_token"
MAX_PATTERNS_PER_CLAIM = 1000
_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Grant:
    """What one verified token allows."""

    subject: str | None
    publish: tuple[TopicPattern, ...] = ()
    subscribe: tuple[TopicPattern, ...] = ()
    files: tuple[TopicPattern, ...] = ()


class Verifier:
    """Checks tokens against the configured key; one per application."""

    def __init__(self, key: Any, algorithms: Sequence[str], *, require_exp: bool = True) -> None:
        self._key = key
        self.algorithms = list(algorithms)
        # A token without exp would be valid forever: refused unless the operator allows it.
        self._required = ["exp"] if require_exp else []

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier | None:
        require_exp = not settings.allow_tokens_without_exp
        if settings.jwt_key is not None:
            return cls(settings.jwt_key, HMAC_ALGORITHMS, require_exp=require_exp)
        if settings.jwt_public_key is not None:
            key, algorithms = _public_key(_read_pem(settings.jwt_public_key))
            return cls(key, algorithms, require_exp=require_exp)
        return None

    def verify(self, token: str) -> Grant:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                leeway=JWT_LEEWAY_S,
                # No audience is configured, so an "aud" claim is not checked.
                options={
                    "verify_aud": False,
                    "enforce_minimum_key_length": True,
                    "require": self._required,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", error="invalid_token") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(
                f"the token has no {exc.claim!r} claim; this hub accepts only tokens that expire",
                error="invalid_token",
            ) from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet (nbf)", error="invalid_token") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized(f"the token is not valid: {exc}", error="invalid_token") from None
        return _grant(claims)


def _read_pem(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            "--jwt-public-key", f"cannot read key file {str(path)!r}: {exc}"
        ) from None


def _public_key(pem: str) -> tuple[Any, tuple[str, ...]]:
    """The key object and the one algorithm its type can verify."""
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except ValueError as exc:
        raise ConfigError("--jwt-public-key", f"not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise ConfigError("--jwt-public-key", f"an RSA key needs {MIN_RSA_KEY_BITS} bits")
        return key, RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, EC_ALGORITHMS
    raise ConfigError("--jwt-public-key", "expected an RSA key (RS256) or a P-256 key (ES256)")


def _bad_claims(detail: str) -> Unauthorized:
    return Unauthorized(f"the token's claims are not valid: {detail}", error="invalid_token")


def _patterns(section: dict[str, Any], name: str) -> tuple[TopicPattern, ...]:
    values = section.get(name, [])
    if not isinstance(values, list) or len(values) > MAX_PATTERNS_PER_CLAIM:
        raise _bad_claims(f"{CLAIMS_KEY}.{name} must be a list of topic patterns")
    try:
        return tuple(
            TopicPattern(validate_topic(value, what=f"{name} pattern")) for value in values
        )
    except HubError as exc:
        raise _bad_claims(f"{CLAIMS_KEY}.{name}: {exc.detail}") from None


def _grant(claims: dict[str, Any]) -> Grant:
    """Claims to a grant; claims we cannot read make the token invalid (401), not weak."""
    section = claims.get(CLAIMS_KEY, {})
    if not isinstance(section, dict):
        raise _bad_claims(f"{CLAIMS_KEY} must be an object")
    subject = claims.get("sub")
    return Grant(
        subject=subject if isinstance(subject, str) and subject else None,
        publish=_patterns(section, "publish"),
        subscribe=_patterns(section, "subscribe"),
        files=_patterns(section, "files"),
    )


# ---- per request

VERIFIER = web.AppKey("sse_hub.verifier", Verifier)


def _verifier(request: RequestView) -> Verifier | None:
    return request.app.get(VERIFIER)


def _token(request: RequestView, *, header_only: bool) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        if not header.lower().startswith(_BEARER) or not header[len(_BEARER) :].strip():
            raise Unauthorized(
                "the Authorization header must be 'Bearer <token>'", error="invalid_token"
            )
        return header[len(_BEARER) :].strip()
    if header_only:
        return None
    return request.cookies.get(TOKEN_COOKIE) or request.query.get(TOKEN_QUERY) or None


def require_bearer(request: RequestView, secret: str) -> None:
    """Refuse a request whose ``Authorization: Bearer`` is not ``secret`` (constant time)."""
    given = _token(request, header_only=True)
    if given is None:
        raise Unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        raise Unauthorized("the token is not valid for this endpoint", error="invalid_token")


def authenticate(request: RequestView, *, header_only: bool = False) -> Grant | None:
    """The request's grant; ``None`` when the hub is open. Raises ``Unauthorized``."""
    verifier = _verifier(request)
    if verifier is None:
        return None
    token = _token(request, header_only=header_only)
    if token is None:
        where = (
            "an Authorization: Bearer header"
            if header_only
            else f"an Authorization: Bearer header, the {TOKEN_COOKIE} cookie "
            f"or the {TOKEN_QUERY} query value"
        )
        raise Unauthorized(f"this hub needs a token: send it in {where}")
    return verifier.verify(token)


def authorize_subscribe(grant: Grant | None, patterns: tuple[TopicPattern, ...]) -> None:
    if grant is None:
        return
    refused = first_uncovered(grant.subscribe, patterns)
    if refused is not None:
        raise Forbidden(f"this token may not subscribe to {refused.text!r}")


def authorize_publish(grant: Grant | None, topics: Sequence[str]) -> None:
    if grant is None:
        return
    for topic in topics:
        if not any_matches(grant.publish, topic):
            raise Forbidden(f"this token may not publish to {topic!r}")


def authorize_download(request: web.Request, path: str, *, asked: str | None = None) -> None:
    """Allow a download of ``path`` (relative to ``--files-dir``, ``/``-separated) or raise.

    The token may come from the header, the cookie or the query; its
    ``sse_hub.files`` claim lists path patterns matched like topics
    (``reports/*``, ``*``). ``asked`` is the path the client asked for when
    ``path`` is where a symlink led: the refusal names only what was asked.
    """
    grant = authenticate(request)
    if grant is None:
        return
    if not any_matches(grant.files, path.lstrip("/")):
        if asked is not None:
            raise Forbidden(
                f"this token may not download {asked!r}: it leads to a file it does not allow"
            )
        raise Forbidden(f"this token may not download {path!r}")


# ---- minting, for development (``sse-hub token``)


def mint_token(
    *,
    key: str,
    private_key_pem: str | None = None,
    publish: Sequence[str] = (),
    subscribe: Sequence[str] = (),
    files: Sequence[str] = (),
    subject: str | None = None,
    ttl_s: float = 3600.0,
    now_s: float | None = None,
) -> str:
    """A signed token: HS256 with ``key``, or RS256/ES256 with ``private_key_pem``."""
    issued = int(time.time() if now_s is None else now_s)
    claims: dict[str, Any] = {
        "iat": issued,
        "exp": issued + int(ttl_s),
        CLAIMS_KEY: {"publish": list(publish), "subscribe": list(subscribe), "files": list(files)},
    }
    if subject:
        claims["sub"] = subject
    if private_key_pem is None:
        return jwt.encode(claims, key, algorithm=HMAC_ALGORITHMS[0])
    private = load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    if isinstance(private, rsa.RSAPrivateKey):
        return jwt.encode(claims, private, algorithm=RSA_ALGORITHMS[0])
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return jwt.encode(claims, private, algorithm=EC_ALGORITHMS[0])
    raise ValueError("expected an RSA or P-256 private key")
