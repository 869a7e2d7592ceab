from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sse_hub.reconnect import RETRY_JITTER, Backoff, is_retried, parse_retry_after


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_statuses_worth_another_attempt(status: int) -> None:
    assert is_retried(status)


@pytest.mark.parametrize("status", [204, 301, 400, 401, 403, 404, 405, 413, 415, 422])
def test_statuses_that_would_answer_the_same(status: int) -> None:
    assert not is_retried(status)


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),  # past: at once
        (None, None),
        ("", None),
        ("-3", None),
        ("1.5", None),
        ("\u00b2", None),  # a digit to str.isdigit, not to RFC 9110
        ("soon", None),
        ("Fri, 02 Jan 2026 03:04:35", None),  # no zone: not an HTTP-date
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def _delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay_s() for _ in range(count)]


def test_first_wait_is_the_hubs_retry_then_doubles_up_to_the_cap() -> None:
    backoff = Backoff(retry_s=3.0, max_delay_s=30.0, random=lambda: 0.0)
    assert _delays(backoff, 6) == [3.0, 6.0, 12.0, 24.0, 30.0, 30.0]


def test_bytes_from_a_connection_start_the_back_off_again() -> None:
    backoff = Backoff(retry_s=1.0, max_delay_s=30.0, random=lambda: 0.0)
    assert _delays(backoff, 3) == [1.0, 2.0, 4.0]
    backoff.connected()
    assert _delays(backoff, 2) == [1.0, 2.0]


def test_a_new_retry_from_the_hub_is_the_new_base() -> None:
    backoff = Backoff(retry_s=3.0, max_delay_s=30.0, random=lambda: 0.0)
    backoff.retry_s = 0.5
    assert _delays(backoff, 2) == [0.5, 1.0]


def test_jitter_only_adds_up_to_a_quarter() -> None:
    assert Backoff(retry_s=2.0, max_delay_s=30.0, random=lambda: 1.0).next_delay_s() == (
        2.0 * (1 + RETRY_JITTER)
    )
    assert RETRY_JITTER == 0.25
    spread = {Backoff(retry_s=2.0, max_delay_s=30.0).next_delay_s() for _ in range(50)}
    assert all(2.0 <= delay <= 2.5 for delay in spread)
    assert len(spread) > 1  # clients dropped together come back apart


def test_retry_after_wins_when_longer_within_the_cap() -> None:
    backoff = Backoff(retry_s=1.0, max_delay_s=30.0, random=lambda: 0.0)
    assert backoff.next_delay_s(retry_after_s=5.0) == 5.0
    assert backoff.next_delay_s(retry_after_s=0.5) == 2.0  # the back-off is longer
    assert backoff.next_delay_s(retry_after_s=3600.0) == 30.0


def test_retry_zero_is_no_busy_loop_and_long_runs_stay_finite() -> None:
    backoff = Backoff(retry_s=0.0, max_delay_s=10.0, random=lambda: 0.0)
    assert _delays(backoff, 2) == [0.1, 0.2]
    assert _delays(backoff, 5000)[-1] == 10.0
