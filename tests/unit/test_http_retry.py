"""Retry policy: Retry-After honoured, jittered backoff, bounded attempts, POST safety."""

from __future__ import annotations

import pytest
import requests

from shared.adapters.http_retry import (
    RetriesExhaustedError,
    RetryPolicy,
    retry_after_seconds,
    send_with_retries,
)


def response(status: int, retry_after: str | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    if retry_after is not None:
        r.headers["Retry-After"] = retry_after
    return r


def test_retry_after_is_honoured_then_success() -> None:
    answers = iter([response(429, "3"), response(503), response(200)])
    slept: list[float] = []
    result = send_with_retries(
        lambda: next(answers), RetryPolicy(base_delay=1), sleep=slept.append, rng=lambda: 1.0
    )
    assert result.status_code == 200
    assert slept == [3.0, 2.0]  # Retry-After, then 1 s * 2^1 backoff at full jitter


def test_attempts_are_bounded_and_the_last_answer_returned() -> None:
    calls = []

    def send() -> requests.Response:
        calls.append(1)
        return response(503)

    result = send_with_retries(send, RetryPolicy(max_attempts=3), sleep=lambda _s: None)
    assert result.status_code == 503 and len(calls) == 3


def test_non_transient_answers_are_not_retried() -> None:
    calls = []

    def send() -> requests.Response:
        calls.append(1)
        return response(400)

    assert send_with_retries(send, RetryPolicy(), sleep=lambda _s: None).status_code == 400
    assert len(calls) == 1


def test_connection_errors_are_retried_only_when_safe() -> None:
    def broken() -> requests.Response:
        raise requests.ConnectionError("reset")

    with pytest.raises(RetriesExhaustedError, match="after 1 attempt"):
        send_with_retries(broken, RetryPolicy(), retry_connection_errors=False, sleep=lambda _s: None)
    slept: list[float] = []
    with pytest.raises(RetriesExhaustedError, match="after 3 attempt"):
        send_with_retries(broken, RetryPolicy(max_attempts=3), sleep=slept.append)
    assert len(slept) == 2


def test_jitter_stays_within_half_to_full_backoff() -> None:
    policy = RetryPolicy(base_delay=2, max_delay=100)
    assert policy.backoff(3, rng=lambda: 0.0) == 4.0
    assert policy.backoff(3, rng=lambda: 1.0) == 8.0
    assert policy.backoff(20, rng=lambda: 1.0) == 100.0


def test_retry_after_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(response(429, "Thu, 01 Jan 2026 12:00:10 GMT"), now=lambda: now) == 10.0
    assert retry_after_seconds(response(429, "soon"), now=lambda: now) is None


def test_a_429_without_retry_after_backs_off_from_its_own_base_doubling() -> None:
    answers = iter([response(429), response(429), response(503), response(200)])
    slept: list[float] = []
    policy = RetryPolicy(base_delay=0.5, throttled_base_delay=0.1)
    result = send_with_retries(lambda: next(answers), policy, sleep=slept.append, rng=lambda: 1.0)
    assert result.status_code == 200
    assert slept == [0.1, 0.2, 2.0]  # 429s from 0.1 s doubling; a 503 keeps the 0.5 s base (x 2^2)


def test_a_429_with_retry_after_waits_what_it_says_whatever_the_base() -> None:
    answers = iter([response(429, "2"), response(200)])
    slept: list[float] = []
    policy = RetryPolicy(base_delay=0.5, throttled_base_delay=0.1)
    send_with_retries(lambda: next(answers), policy, sleep=slept.append, rng=lambda: 1.0)
    assert slept == [2.0]


def test_a_long_retry_after_is_waited_out_in_full_only_within_the_time_left() -> None:
    # Graph (Learn, "Microsoft Graph throttling guidance"): "wait the number of seconds specified in
    # the Retry-After header". Within the invocation's remaining time, that is; beyond it, the
    # answer is given back at once instead of the host killing the run mid-sleep.
    def run(time_left: float | None, *, known: bool = True) -> tuple[int, list[float]]:
        answers = iter([response(429, "120"), response(200)])
        slept: list[float] = []
        result = send_with_retries(
            lambda: next(answers),
            RetryPolicy(max_delay=60),
            sleep=slept.append,
            time_left=(lambda: time_left) if known else None,
        )
        return result.status_code, slept

    assert run(600) == (200, [120.0])
    assert run(100) == (429, [])
    assert run(None) == (200, [60.0])  # how much is left is not known: capped, as before
    assert run(0, known=False) == (200, [60.0])
