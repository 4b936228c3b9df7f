"""The Business Central budget's pure rules: slots, leases, the per-slot share of the window."""

from __future__ import annotations

import pytest

from shared.domain.bc_budget import (
    CLOCK_SKEW,
    BudgetLimits,
    SlotState,
    available,
    backoff,
    give_back,
    next_chance,
    renew,
    take,
    usage,
)

LIMITS = BudgetLimits(concurrency=5, limit=5400, window=300.0, lease=45.0, hold_seconds=3.0, hold_requests=10)


def test_the_shares_of_the_rate_add_up_to_the_limit() -> None:
    limits = BudgetLimits(concurrency=5, limit=5402)
    assert [limits.quota(i) for i in range(5)] == [1081, 1081, 1080, 1080, 1080]
    assert sum(limits.quota(i) for i in range(5)) == 5402
    tiny = BudgetLimits(concurrency=5, limit=3)
    assert [tiny.quota(i) for i in range(5)] == [1, 1, 1, 0, 0]  # two slots never taken


def test_a_free_slot_is_taken_with_a_reservation_and_a_lease() -> None:
    taken = take(SlotState(), 0, "me", LIMITS, 1000.0, want=10)
    assert taken is not None
    assert (taken.holder, taken.expires_at, taken.until, taken.reserved) == ("me", 1045.0, 1003.0, 10)
    assert usage(taken, 1000.0, LIMITS.window) == 10  # the reservation counts at once


def test_a_held_slot_is_not_taken_until_its_lease_and_the_skew_have_passed() -> None:
    held = take(SlotState(), 0, "other", LIMITS, 1000.0, want=10)
    assert held is not None
    assert take(held, 0, "me", LIMITS, 1044.0, want=1) is None
    assert take(held, 0, "me", LIMITS, 1045.0 + CLOCK_SKEW, want=1) is None
    taken = take(held, 0, "me", LIMITS, 1045.1 + CLOCK_SKEW, want=1)
    assert taken is not None and taken.holder == "me"


def test_a_dead_holders_reservation_stays_counted_at_its_lease_end() -> None:
    held = take(SlotState(), 0, "dead", LIMITS, 1000.0, want=10)
    assert held is not None
    later = 1050.0
    taken = take(held, 0, "me", LIMITS, later, want=10)
    assert taken is not None
    assert (1045.0, 10) in taken.log  # the dead holder may have sent all 10 up to its lease end
    assert usage(taken, 1045.0 + 299.0, LIMITS.window) >= 10
    assert usage(replace_reserved(taken), 1045.0 + 300.0, LIMITS.window) == 0


def replace_reserved(state: SlotState) -> SlotState:
    return SlotState(log=state.log)


def test_giving_back_counts_what_was_used_stamped_no_earlier_than_now() -> None:
    held = take(SlotState(), 0, "me", LIMITS, 1000.0, want=10)
    assert held is not None
    freed = give_back(held, 3, LIMITS, 1002.2)
    assert freed.holder == "" and freed.reserved == 0
    [(stamp, count)] = freed.log
    assert count == 3 and stamp >= 1002.2 and stamp - 1002.2 <= LIMITS.granularity
    assert usage(freed, stamp + LIMITS.window - 0.01, LIMITS.window) == 3
    assert usage(freed, stamp + LIMITS.window, LIMITS.window) == 0


def test_a_spent_share_blocks_the_slot_until_its_oldest_count_leaves_the_window() -> None:
    limits = BudgetLimits(concurrency=1, limit=10, window=60.0)
    state = SlotState()
    now = 0.0
    for _ in range(2):
        held = take(state, 0, "me", limits, now, want=5)
        assert held is not None and held.reserved == 5
        state = give_back(held, 5, limits, now)
        now += 1.0
    assert available(state, 0, limits, now) == 0
    assert take(state, 0, "me", limits, now, want=1) is None
    oldest = state.log[0][0]
    assert next_chance([state], limits, now) == oldest + limits.window
    assert take(state, 0, "me", limits, oldest + limits.window, want=1) is not None


def test_a_reservation_never_exceeds_the_share_left() -> None:
    limits = BudgetLimits(concurrency=1, limit=12, window=60.0)
    first = take(SlotState(), 0, "a", limits, 0.0, want=10)
    assert first is not None
    second = take(give_back(first, 10, limits, 1.0), 0, "b", limits, 2.0, want=10)
    assert second is not None and second.reserved == 2


def test_in_any_window_the_slots_together_allow_at_most_the_limit() -> None:
    """Simulate greedy holders over 3 windows; count what was sent in every window."""
    limits = BudgetLimits(concurrency=3, limit=30, window=10.0, hold_requests=4)
    states = [SlotState() for _ in range(3)]
    sent: list[float] = []
    now = 0.0
    while now < 30.0:
        for index in range(3):
            held = take(states[index], index, f"h{index}", limits, now, want=limits.hold_requests)
            if held is None:
                continue
            for k in range(held.reserved):
                sent.append(now + 0.01 * k)
            states[index] = give_back(held, held.reserved, limits, now + 0.01 * held.reserved)
        now += 0.05
    sent.sort()
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t < start + limits.window) <= limits.limit
    assert len(sent) >= 2.5 * limits.limit  # and the budget is used, not wasted


def test_renewing_moves_the_lease_and_the_reservation_later() -> None:
    held = take(SlotState(), 0, "me", LIMITS, 1000.0, want=10)
    assert held is not None
    renewed = renew(held, LIMITS, 1020.0)
    assert renewed.expires_at == 1065.0 and renewed.holder == "me" and renewed.reserved == 10


def test_waiters_wake_when_a_holder_plans_to_give_back_or_a_pause_ends() -> None:
    held = take(SlotState(), 0, "other", BudgetLimits(concurrency=1), 1000.0, want=1)
    assert held is not None
    assert next_chance([held], BudgetLimits(concurrency=1), 1000.5) == 1003.0
    assert next_chance([held], BudgetLimits(concurrency=1), 1000.5, paused_until=1010.0) == 1010.0
    assert next_chance([None], BudgetLimits(concurrency=1), 1000.5) == 1000.5  # never written: free


def test_an_unreadable_log_counts_as_spent_not_as_free() -> None:
    state = SlotState(log=SlotState.parse_log("not json"))
    assert available(state, 0, LIMITS, 1000.0) == 0


@pytest.mark.parametrize("attempt", [1, 2, 5, 20])
def test_backoff_has_jitter_and_a_cap(attempt: int) -> None:
    low, high = backoff(attempt, rng=lambda: 0.0), backoff(attempt, rng=lambda: 1.0)
    assert low == high / 2 and high <= 2.0
