"""The Business Central budget's rules: slots, their sliding-window counts, leases. Pure, no I/O.

Business Central allows 5 requests in flight and 6,000 per sliding 5 minutes per app registration,
for all its callers together. The app keeps one budget for all its instances in its storage account
(`shared/adapters/bc_budget.py` does the I/O); these are the rules it applies to what it reads.

- **Concurrency**: the budget is `concurrency` slots. A request is sent only by the holder of a
  slot, and a slot has at most one holder: taking it is a conditional write. A holder's claim is a
  lease (`expires_at`); a holder that dies frees its slot when the lease runs out.
- **Rate**: each slot carries its own share of the rate limit (`quota`: the limit divided among the
  slots), so no two writers ever update the same count and the shares add up to the limit exactly.
  A slot's count is a short log of `(stamp, count)` entries; an entry counts while
  `now < stamp + window`. Stamps are never earlier than the requests they count:
  - taking a slot reserves up to `want` requests, counted at the lease's end (`expires_at`, the
    last moment the holder may start one; renewing moves it later);
  - giving the slot back replaces the reservation by the requests actually sent, stamped now
    (rounded up to `granularity`), after all of them started;
  - a slot taken from a holder that died keeps the dead holder's whole reservation at its
    `expires_at`.
  So the window counted here always covers Business Central's own window: it never lets more than
  `limit` requests through in any `window` seconds.
- **Waiting** is driven by what the slots say: a held slot names when its holder plans to give it
  back (`until`), an exhausted slot when its oldest entry expires. Waiters sleep until then (with
  jitter) instead of polling.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from shared.domain.errors import BusinessCentralError

CLOCK_SKEW = 2.0
"""Seconds by which instances' clocks may differ: a lease counts as expired only this much later."""


class BudgetTimeoutError(BusinessCentralError):
    """No Business Central slot could be had in time. Nothing was sent; `retry_in` suggests when
    to try again (seconds)."""

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message, transient=True)
        self.retry_in = retry_in


@dataclass(frozen=True)
class BudgetLimits:
    concurrency: int = 5
    limit: int = 5400
    window: float = 300.0
    lease: float = 45.0
    hold_seconds: float = 3.0
    hold_requests: int = 10

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.limit < 1:
            raise ValueError("concurrency and limit must be at least 1")

    @property
    def granularity(self) -> float:
        """Stamps are rounded up to this: at most ~60 log entries per slot, a 1.7 % loss at most."""
        return self.window / 60.0

    def quota(self, index: int) -> int:
        """Slot `index`'s share of the rate limit; the shares add up to `limit` (a limit below the
        concurrency leaves some slots a share of 0: they are never taken)."""
        share, rest = divmod(self.limit, self.concurrency)
        return share + (1 if index < rest else 0)


@dataclass(frozen=True)
class SlotState:
    """One slot as stored. `holder` is empty when nobody holds it."""

    holder: str = ""
    expires_at: float = 0.0
    until: float = 0.0
    reserved: int = 0
    log: tuple[tuple[float, int], ...] = ()

    def held(self, now: float) -> bool:
        return bool(self.holder) and now <= self.expires_at + CLOCK_SKEW

    def log_json(self) -> str:
        return json.dumps([[round(stamp, 3), count] for stamp, count in self.log], separators=(",", ":"))

    @staticmethod
    def parse_log(text: str | None) -> tuple[tuple[float, int], ...]:
        if not text:
            return ()
        try:
            rows = json.loads(text)
            return tuple((float(stamp), int(count)) for stamp, count in rows)
        except (ValueError, TypeError):
            # An unreadable count must not free the budget: treat it as spent for a whole window.
            return ((math.inf, 1 << 30),)


def round_up(moment: float, granularity: float) -> float:
    return math.ceil(moment / granularity) * granularity


def _prune(entries: Iterable[tuple[float, int]], now: float, window: float) -> tuple[tuple[float, int], ...]:
    merged: dict[float, int] = {}
    for stamp, count in entries:
        if count > 0 and stamp + window > now:
            merged[stamp] = merged.get(stamp, 0) + count
    return tuple(sorted(merged.items()))


def usage(state: SlotState, now: float, window: float) -> int:
    """Requests this slot has sent (or may have sent) inside the window ending now."""
    counted = sum(count for stamp, count in state.log if stamp + window > now)
    if state.reserved and state.expires_at + window > now:
        counted += state.reserved
    return counted


def _settled(state: SlotState, now: float, window: float) -> tuple[tuple[float, int], ...]:
    """The log with a previous holder's reservation kept as spent at its lease end."""
    entries = list(state.log)
    if state.reserved:
        entries.append((state.expires_at, state.reserved))
    return _prune(entries, now, window)


def available(state: SlotState, index: int, limits: BudgetLimits, now: float) -> int:
    """How many requests a new holder of this (free) slot may reserve right now."""
    log = _settled(state, now, limits.window)
    return max(0, limits.quota(index) - sum(count for _, count in log))


def take(
    state: SlotState, index: int, holder: str, limits: BudgetLimits, now: float, want: int
) -> SlotState | None:
    """The slot as written by a new holder reserving up to `want` requests, or None when it is
    held or its share of the rate is spent."""
    if state.held(now):
        return None
    room = available(state, index, limits, now)
    if room <= 0:
        return None
    return SlotState(
        holder=holder,
        expires_at=now + limits.lease,
        until=now + limits.hold_seconds,
        reserved=min(max(1, want), room),
        log=_settled(state, now, limits.window),
    )


def renew(state: SlotState, limits: BudgetLimits, now: float) -> SlotState:
    """The lease extended; the reservation moves with it (later stamps only count longer)."""
    return replace(state, expires_at=max(state.expires_at, now + limits.lease))


def give_back(state: SlotState, used: int, limits: BudgetLimits, now: float) -> SlotState:
    """The slot freed: the reservation replaced by the `used` requests, stamped now (rounded up)."""
    entries = [*state.log, (round_up(now, limits.granularity), used)]
    return SlotState(log=_prune(entries, now, limits.window))


def next_chance(
    states: Sequence[SlotState | None], limits: BudgetLimits, now: float, paused_until: float = 0.0
) -> float:
    """The earliest moment a slot may be takeable, from what the slots say (never before now)."""
    if paused_until > now:
        return paused_until
    best = math.inf
    for index, state in enumerate(states[: limits.concurrency]):
        if state is None:
            return now
        if state.held(now):
            # Its holder plans to give it back at `until`; if it dies, the lease runs out.
            planned = state.until if state.until > now else now + limits.hold_seconds / 4
            best = min(best, planned, state.expires_at + CLOCK_SKEW)
            continue
        if available(state, index, limits, now) > 0:
            return now
        log = _settled(state, now, limits.window)
        if log:
            best = min(best, log[0][0] + limits.window)
    return best if best != math.inf else now + limits.hold_seconds


def backoff(
    attempt: int, *, base: float = 0.05, cap: float = 2.0, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter (half to full) for the `attempt`-th (1-based) empty-handed poll."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling * (0.5 + rng() / 2)
