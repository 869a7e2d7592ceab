"""What a run of ``sse-hub probe`` is to do: its topic, connections, duration, rate and drops.

Pure. ``make_plan`` reads the command's flags and checks each against its
limit, raising ``ConfigError`` (a one-line usage error) for the first one out
of bounds. Durations are written as everywhere else (``10s``, ``2m``).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sse_hub.config import parse_duration_s
from sse_hub.errors import ConfigError, HubError
from sse_hub.events import WILDCARD_ALL, WILDCARD_SUFFIX, validate_topic

_T = TypeVar("_T")
_ROUNDING = 1e-9  # 0.7 * 10 is 7.000000000000001 in floating point

DEFAULT_CONNECTIONS = 4
MAX_CONNECTIONS = 64
DEFAULT_DURATION = "10s"
MAX_DURATION_S = 3600.0
DEFAULT_RATE_PER_S = 20.0
MIN_RATE_PER_S = 0.1
MAX_RATE_PER_S = 1000.0
DEFAULT_GRACE = "10s"
MAX_GRACE_S = 600.0
# Every connection keeps a receipt per event, some 400 bytes: at most about 100 MB.
MAX_RECEIPTS = 250_000
TOPIC_PREFIX = "sse-hub-probe/"


@dataclass(frozen=True, kw_only=True)
class Plan:
    """One run: ``events`` published at ``rate_per_s`` to ``topic``, read on ``connections``."""

    topic: str
    connections: int = DEFAULT_CONNECTIONS
    duration_s: float = 10.0
    rate_per_s: float = DEFAULT_RATE_PER_S
    drop_every_s: float = 0.0  # 0: no connection is dropped on purpose
    grace_s: float = 10.0

    @property
    def events(self) -> int:
        """How many publish slots (one every ``1 / rate_per_s``) start within the duration."""
        return max(1, math.ceil(self.duration_s * self.rate_per_s - _ROUNDING))


def new_topic() -> str:
    """A topic of the run's own, so that probes at the same time do not see each other."""
    return TOPIC_PREFIX + secrets.token_hex(6)


def make_plan(
    *,
    topic: str | None,
    connections: str,
    duration: str,
    rate: str,
    drop_every: str,
    grace: str,
) -> Plan:
    """The run the flags ask for; ``ConfigError`` names the first flag out of its limits."""
    plan = Plan(
        topic=_topic(topic) if topic is not None else new_topic(),
        connections=_flag("--connections", _connections, connections),
        duration_s=_flag("--duration", _duration(MAX_DURATION_S), duration),
        rate_per_s=_flag("--rate", _rate, rate),
        drop_every_s=_flag("--drop-every", _drop_every, drop_every),
        grace_s=_flag("--grace", _duration(MAX_GRACE_S), grace),
    )
    if plan.drop_every_s >= plan.duration_s:
        raise ConfigError(
            "--drop-every",
            f"{drop_every} is not shorter than --duration {duration}: nothing would be dropped",
        )
    if plan.events * plan.connections > MAX_RECEIPTS:
        raise ConfigError(
            "--rate",
            f"{plan.events} events on {plan.connections} connections is over "
            f"{MAX_RECEIPTS} receipts: lower --rate, --duration or --connections",
        )
    return plan


def _flag(flag: str, parse: Callable[[str], _T], text: str) -> _T:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None


def _topic(text: str) -> str:
    try:
        validate_topic(text)
    except HubError as exc:
        raise ConfigError("--topic", exc.detail) from None
    if text == WILDCARD_ALL or text.endswith(WILDCARD_SUFFIX):
        raise ConfigError("--topic", f"{text!r} is a pattern; the probe publishes to one topic")
    return text


def _connections(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a number of connections, got {text!r}") from None
    if not 1 <= value <= MAX_CONNECTIONS:
        raise ValueError(f"must be between 1 and {MAX_CONNECTIONS}, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected events per second, e.g. 20, got {text!r}") from None
    if not MIN_RATE_PER_S <= value <= MAX_RATE_PER_S:
        raise ValueError(f"must be between {MIN_RATE_PER_S:g} and {MAX_RATE_PER_S:g}, got {text}")
    return value


def _duration(limit_s: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = parse_duration_s(text)
        if value > limit_s:
            raise ValueError(f"must be at most {limit_s:g}s, got {text!r}")
        return value

    return parse


def _drop_every(text: str) -> float:
    return 0.0 if text.strip() == "0" else parse_duration_s(text)
