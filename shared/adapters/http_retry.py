"""Retries for calls to Graph and Business Central: `Retry-After` first, else backoff with jitter.

Only the caller knows whether a request is safe to repeat: a POST whose connection dropped may
have been committed, so `retry_connection_errors` is off unless the request is idempotent.

A 429 without `Retry-After` may back off from its own, shorter base (`throttled_base_delay`): the
server refused the request before running it, and a caller that keeps within the server's limits
by other means (Business Central's shared budget) meets such a 429 only by bad luck. Waiting the
0.5 s base of a server error there left a worker idle for nothing; the backoff still doubles with
every further 429, with jitter, as the reference asks for a 429 without `Retry-After`.

A `Retry-After` is waited out in full ("wait the number of seconds specified in the Retry-After
header", Learn, `graph/throttling`, "Best practices to handle throttling") when the caller says how
much of its invocation is left (`time_left`) and the wait fits in it; one that does not fit is not
waited for: the answer is returned at once, so the run ends with the server's own error instead of
being killed by the host's `functionTimeout` mid-sleep. Without `time_left` a wait is capped at
`max_delay`, as before.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 60.0
    retry_statuses: frozenset[int] = field(default=RETRY_STATUSES)
    throttled_base_delay: float | None = None
    """Base of the backoff after a 429 without `Retry-After`; None: `base_delay`."""

    def backoff(
        self, attempt: int, rng: Callable[[], float] = random.random, *, throttled: bool = False
    ) -> float:
        """Exponential backoff with full jitter for the given (1-based) failed attempt."""
        base = self.base_delay
        if throttled and self.throttled_base_delay is not None:
            base = self.throttled_base_delay
        ceiling = min(self.max_delay, base * (2 ** (attempt - 1)))
        return ceiling * (0.5 + rng() / 2)


def retry_after_seconds(
    response: requests.Response, now: Callable[[], datetime] | None = None
) -> float | None:
    """The server's `Retry-After`, in seconds (delta-seconds or an HTTP date), if it sent one."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = (now or (lambda: datetime.now(UTC)))()
    return max(0.0, (moment - current).total_seconds())


class RetriesExhaustedError(Exception):
    """The request kept failing transiently; `last_error` says how."""

    def __init__(self, message: str, response: requests.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


# A connection that failed or was cut off: the request may or may not have run. A body cut off
# mid-read (`ChunkedEncodingError`) means the server answered, so a POST may well have committed.
_CONNECTION_LOST = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def send_with_retries(
    send: Callable[[], requests.Response],
    policy: RetryPolicy,
    *,
    retry_connection_errors: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[int, str, float], None] | None = None,
    time_left: Callable[[], float | None] | None = None,
) -> requests.Response:
    """Send until a non-transient answer; the last transient answer is returned as is.

    Connection errors and timeouts are retried only when `retry_connection_errors` is set; after
    the last attempt they raise `RetriesExhaustedError`. `time_left` (seconds left in the
    invocation, None: unknown) lets a `Retry-After` above `max_delay` be honoured in full.
    """
    for attempt in range(1, policy.max_attempts + 1):
        last = attempt == policy.max_attempts
        try:
            response = send()
        except _CONNECTION_LOST as exc:
            if not retry_connection_errors or last:
                raise RetriesExhaustedError(f"{type(exc).__name__} after {attempt} attempt(s)") from exc
            delay = policy.backoff(attempt, rng)
            reason = type(exc).__name__
        else:
            if response.status_code not in policy.retry_statuses or last:
                return response
            delay = _delay_after(response, attempt, policy, rng, time_left)
            if delay is None:
                return response  # the server's wait would outlast the invocation: its answer stands
            reason = f"HTTP {response.status_code}"
        if on_retry is not None:
            on_retry(attempt, reason, delay)
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _delay_after(
    response: requests.Response,
    attempt: int,
    policy: RetryPolicy,
    rng: Callable[[], float],
    time_left: Callable[[], float | None] | None,
) -> float | None:
    """Seconds to wait before the next attempt after a transient answer, or None: do not retry.

    `Retry-After` up to `max_delay` is always honoured; a longer one in full when it fits in the
    time left, never when it does not; when nothing says how much is left, it is cut to
    `max_delay`, as before. Without it: backoff with jitter."""
    told = retry_after_seconds(response)
    if told is None:
        return policy.backoff(attempt, rng, throttled=response.status_code == 429)
    if told <= policy.max_delay:
        return told
    left = time_left() if time_left is not None else None
    if left is None:
        return policy.max_delay
    return told if told <= left else None
