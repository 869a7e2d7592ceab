"""When the Python client tries again: the hub's ``retry:``, back-off, jitter, ``Retry-After``.

Pure decisions for ``client.py``, no I/O. The first wait after a drop is the
reconnection delay the hub sent (``retry:``, as the WHATWG spec has browsers
wait); each further failure in a row doubles it, up to a cap; a ``Retry-After``
longer than that wins, within the cap too. Every wait then gets up to
``RETRY_JITTER`` more, at random, so clients dropped together (a hub restart)
do not come back in the same instant. Jitter only ever adds: a client never
comes back sooner than the hub asked.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_JITTER = 0.25
MIN_DELAY_S = 0.1  # even after `retry: 0`, a refused connection is not retried in a busy loop
_MAX_DOUBLINGS = 32  # 2**32 times any delay is past any cap; keeps the float finite


def is_retried(status: int) -> bool:
    """Whether an answer other than ``200`` to ``GET /events`` is worth another attempt.

    ``408``, ``429`` and every ``5xx`` (the hub's ``--max-streams``, its database
    away, a proxy whose upstream is restarting) pass; any other status is the
    request's own fault and would get the same answer again.
    """
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date (RFC 9110).

    ``None`` when there is none or it makes no sense; a date in the past is 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; one without a zone is not an HTTP-date
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass
class Backoff:
    """How long to wait before the next attempt, after ``failures`` attempts in a row failed.

    ``retry_s`` follows the hub's ``retry:``; ``connected()`` is called when a
    connection delivers bytes, and the next wait starts from ``retry_s`` again.
    """

    retry_s: float
    max_delay_s: float
    failures: int = 0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def connected(self) -> None:
        self.failures = 0

    def next_delay_s(self, retry_after_s: float | None = None) -> float:
        """Count one more failure; the wait before the next attempt, jitter included."""
        self.failures += 1
        doublings = min(self.failures - 1, _MAX_DOUBLINGS)
        delay = max(self.retry_s, MIN_DELAY_S) * 2.0**doublings
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        delay = min(delay, self.max_delay_s)
        return delay * (1 + RETRY_JITTER * self.random())
