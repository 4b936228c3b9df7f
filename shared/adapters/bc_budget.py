"""One Business Central budget for every instance of the app, kept in the app's storage account.

The rules (slots, leases, the per-slot share of the sliding window) are in
`shared/domain/bc_budget.py`; this module does the I/O, in the table `BusinessCentralBudget`,
partition `budget`: one row per slot (`slot-00` ...) and one row `pause`.

- **Taking a slot** is a conditional write on the slot's row (ETag, or an insert for a row that
  does not exist yet): of two instances that saw the slot free, one wins. **Giving it back** is a
  second conditional write. A slot serves one request at a time; when more requests of this
  process are waiting, it is handed to the next one without touching storage, for up to
  `hold_seconds` and `hold_requests` (its reservation), then given back so other instances get
  their turn.
- **Lingering**: a slot whose request ended while no other request of this process waits is kept
  for `linger` seconds (0.25 s) inside its reservation before it is given back: an invocation
  spends most of its time on storage (claim, record, queue) between two Business Central requests,
  so the next request usually comes within that and takes the slot with no storage operation.
  Before this, nearly every request paid a take and a give-back (2 storage writes, ~30 ms of the
  invoice's critical path). The slot still goes back at its planned end (`hold_seconds`) or after
  `hold_requests`, so other instances get their turn as before, only up to `linger` later.
- **Rolling over**: a slot whose reservation is used up (or whose planned end has come) while
  other requests of this process wait is given back and taken again in one conditional write,
  instead of a give-back, a pause of 20-150 ms and a fresh take: those round trips left the slot
  idle between two requests (~5 % of Business Central's capacity at 250 ms per request). To let
  other instances in, a slot rolls over at most `MAX_ROLLOVERS` times in a row; then it is given
  back as before, when the other instances' waiters (woken at its planned end) may take it.
- **What it costs**: with the row cache fresh (under a second old, kept current by this process's
  own writes) a request alone costs 2 storage operations (take, give back); otherwise 3 (one read
  of the partition, 6 small rows, first). Under load one hold serves up to `hold_requests`
  requests, so well under one operation per request. A waiting process polls with one of its
  threads only, once per wake-up, and wakes when the slots say one may be free (a holder's planned
  end, an expiring count), with jitter, backing off to at most 2 s: no hot loop.
- **Storage faults**: every call goes through `storage_retry.py` with a short policy of its own
  (`BUDGET_STORAGE_POLICY`: the budget waits and looks again by itself); a slot write whose answer
  was lost is read back, so a slot taken or given back is never mistaken for someone else's.
- **Fail closed**: a storage error while taking means no slot (wait and try again, never send
  without one); an error while giving back leaves the slot held until its lease ends (45 s) and
  its reservation counted. A request never starts on a lease with less than half of it left.
- **Leases**: a holder renews its slot (a background thread, every 7.5 s, for slots held longer
  than 15 s) while a long request runs; an instance that dies frees its slots 45 s after its
  last renewal at most.
- **Pauses**: a 429/503 with `Retry-After` from Business Central pauses this process at once and
  every instance through the `pause` row, which every poll reads with the slots.
- **Waiting has a limit**: `budget_wait_limit(seconds)` bounds the total wait of everything inside
  it (one queue try); past it `BudgetTimeoutError` is raised before anything is sent.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage_retry import ResilientTable, StoragePolicy, StorageRetry, resilient_table
from shared.domain.bc_budget import (
    BudgetLimits,
    BudgetTimeoutError,
    SlotState,
    backoff,
    give_back,
    next_chance,
    renew,
    take,
)
from shared.domain.errors import StorageUnavailableError
from shared.telemetry import get_logger

log = get_logger("bookings.bc_budget")

BUDGET_TABLE = "BusinessCentralBudget"
PARTITION = "budget"
PAUSE_ROW = "pause"
CACHE_SECONDS = 1.0
DEFAULT_WAIT = 120.0
"""Longest wait for a slot when no `budget_wait_limit` is in force (timers, the HTTP API)."""
ERROR_BACKOFF = (0.5, 3.0)
BUDGET_STORAGE_POLICY = StoragePolicy(attempts=3, base_delay=0.05, max_delay=0.5, outage_seconds=2.0)
"""Few, quick tries: a budget call that still fails is waited out by the budget's own loop."""
_STORAGE_ERRORS = (AzureError, StorageUnavailableError)
POLL_CAP = 0.5
LINGER = 0.25
MAX_ROLLOVERS = 3
"""Reservations one process may chain on a slot with one write each before giving it back."""
"""Seconds a slot with nothing to send is kept for this process's next request before it goes back."""
"""Longest gap between two looks of a waiting process while slots are held: at most 2 reads/s."""

_deadline: ContextVar[float | None] = ContextVar("bc_budget_deadline", default=None)


@contextlib.contextmanager
def budget_wait_limit(seconds: float) -> Iterator[None]:
    """Everything inside waits at most `seconds` in total for Business Central slots."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def slot_row(index: int) -> str:
    return f"slot-{index:02d}"


class LocalBudget:
    """The budget of one process only (a semaphore): for clients built without storage (tests)."""

    def __init__(
        self,
        semaphore: threading.Semaphore,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._semaphore = semaphore
        self._clock = clock
        self._sleep = sleep
        self._paused_until = 0.0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        wait = self._paused_until - self._clock()
        if wait > 0:
            self._sleep(wait)
        with self._semaphore:
            yield

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)


@dataclass(eq=False)
class _Hold:
    index: int
    state: SlotState
    etag: str
    written_at: float  # monotonic
    used: int = 0
    lost: bool = False
    idle_since: float | None = None  # monotonic; set while it waits in the ready list
    rollovers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Snapshot:
    slots: dict[int, tuple[SlotState, str]]
    pause: float
    read_at: float  # monotonic


class StorageBudget:
    """The shared budget (see the module docstring). Thread-safe; one per process is enough."""

    def __init__(
        self,
        table: TableClient | ResilientTable,
        limits: BudgetLimits,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        default_wait: float = DEFAULT_WAIT,
        linger: float = LINGER,
    ) -> None:
        self._table = resilient_table(table, StorageRetry(BUDGET_STORAGE_POLICY))
        self._linger = linger
        self._linger_wake = threading.Event()
        self._lingerer: threading.Thread | None = None
        self.limits = limits
        self._wall = wall
        self._monotonic = monotonic
        self._rng = rng
        self._default_wait = default_wait
        self._owner = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._cond = threading.Condition()
        self._ready: list[_Hold] = []
        self._out: set[_Hold] = set()
        self._waiting = 0
        self._polling = False
        self._next_poll_at = 0.0
        self._paused_until = 0.0
        self._snapshot: _Snapshot | None = None
        self._table_ready = False
        self._renewer: threading.Thread | None = None
        self._last_error_log = 0.0
        self._empty_polls = 0
        self.operations = 0
        """Storage operations made so far (reads and writes): what the benchmark reports."""

    # -- the gate ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for one request; `BudgetTimeoutError` if none could be had in time."""
        hold = self._acquire()
        try:
            yield
        finally:
            self._finish(hold)

    def pause(self, seconds: float) -> None:
        """Business Central asked to wait (`Retry-After`): this process at once, all through storage."""
        until = self._wall() + seconds
        with self._cond:
            if until <= self._paused_until:
                return
            self._paused_until = until
        log.warning(
            "Business Central asked to wait %.1fs: pausing every instance",
            seconds,
            extra={"outcome": "bc_paused"},
        )
        try:
            self._count()
            self._table.upsert_entity({"PartitionKey": PARTITION, "RowKey": PAUSE_ROW, "until": until})
        except ResourceNotFoundError:
            self._table_ready = False
        except _STORAGE_ERRORS as exc:
            self._log_error("could not share a pause", exc)

    # -- acquiring ---------------------------------------------------------------------------

    def _acquire(self) -> _Hold:
        started = self._monotonic()
        deadline = _deadline.get()
        if deadline is None:
            deadline = started + self._default_wait
        with self._cond:
            self._waiting += 1
        try:
            while True:
                with self._cond:
                    hold = self._pop_ready()
                    if hold is not None:
                        return hold
                    now = self._monotonic()
                    if now >= deadline:
                        raise self._timeout(now - started)
                    if self._polling or now < self._next_poll_at:
                        wake = self._next_poll_at - now if not self._polling else 0.5
                        self._cond.wait(max(0.005, min(wake, deadline - now)))
                        continue
                    self._polling = True
                wait: float | None = ERROR_BACKOFF[1]
                try:
                    wait = self._poll()
                finally:
                    with self._cond:
                        self._polling = False
                        if wait is not None:
                            self._next_poll_at = self._monotonic() + wait
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._waiting -= 1

    def _pop_ready(self) -> _Hold | None:
        if self._paused_until > self._wall():
            return None  # a held slot is not used while Business Central asked to wait
        while self._ready:
            hold = self._ready.pop(0)
            if hold.lost or hold.state.expires_at - self._wall() < self.limits.lease / 2:
                self._release_later(hold)
                continue
            hold.used += 1
            hold.idle_since = None
            self._out.add(hold)
            return hold
        return None

    def _release_later(self, hold: _Hold) -> None:
        threading.Thread(target=self._give_back, args=(hold,), daemon=True).start()

    def _timeout(self, waited: float) -> BudgetTimeoutError:
        pause = max(0.0, self._paused_until - self._wall())
        return BudgetTimeoutError(
            f"no Business Central slot free within {waited:.0f}s (all instances share "
            f"{self.limits.concurrency} in flight and {self.limits.limit} per {self.limits.window:.0f}s)",
            retry_in=pause + 5.0 + 10.0 * self._rng(),
        )

    def _poll(self) -> float | None:
        """One look at the slots: take free ones for this process's waiters (None), or say how
        long to wait before the next look."""
        now = self._wall()
        if self._paused_until > now:
            return self._paused_until - now + 0.2 * self._rng()
        try:
            snapshot = self._read()
        except _STORAGE_ERRORS as exc:
            self._log_error("cannot read the budget (waiting, not sending)", exc)
            return random.uniform(*ERROR_BACKOFF)
        now = self._wall()
        with self._cond:
            self._paused_until = max(self._paused_until, snapshot.pause)
            paused_until = self._paused_until
            want = max(1, self._waiting - len(self._ready))
        if paused_until > now:
            return paused_until - now + 0.2 * self._rng()
        indexes = list(range(self.limits.concurrency))
        random.shuffle(indexes)
        taken = 0
        for index in indexes:
            if taken >= want:
                break
            taken += self._take_one(snapshot, index, now)
        if taken:
            self._empty_polls = 0
            self._ensure_renewer()
            return None
        return self._next_look(snapshot, now, paused_until)

    def _take_one(self, snapshot: _Snapshot, index: int, now: float) -> bool:
        """Try to take slot `index` with a conditional write; a taken slot goes to a waiter."""
        current = snapshot.slots.get(index)
        state, etag = current if current is not None else (SlotState(), None)
        self._sequence += 1
        wanted = take(
            state, index, f"{self._owner}-{self._sequence}", self.limits, now, self.limits.hold_requests
        )
        if wanted is None:
            return False
        try:
            new_etag = self._write(index, wanted, etag)
        except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
            self._snapshot = None  # someone else was quicker: read afresh next time
            return False
        except _STORAGE_ERRORS as exc:
            self._snapshot = None
            self._log_error("cannot take a slot (waiting, not sending)", exc)
            return False
        hold = _Hold(index, wanted, new_etag, self._monotonic())
        with self._cond:
            self._ready.append(hold)
            self._cond.notify()
        return True

    def _next_look(self, snapshot: _Snapshot, now: float, paused_until: float) -> float:
        """No slot taken: how long to wait before looking again."""
        states = [
            snapshot.slots[i][0] if i in snapshot.slots else None for i in range(self.limits.concurrency)
        ]
        chance = next_chance(states, self.limits, now, paused_until)
        self._snapshot = None
        wait = max(0.02, chance - now) + 0.05 * self._rng()
        if any(state is not None and state.held(now) for state in states):
            # A holder gives its slot back at `until` at the latest, often sooner (nothing more
            # to send): look again after a backoff growing to POLL_CAP if that comes first.
            self._empty_polls += 1
            wait = min(wait, backoff(self._empty_polls, cap=POLL_CAP, rng=self._rng))
        return wait

    # -- giving back ---------------------------------------------------------------------------

    def _finish(self, hold: _Hold) -> None:
        now = self._wall()
        with self._cond:
            self._out.discard(hold)
            others = self._waiting - len(self._ready)
            reusable = (
                not hold.lost
                and hold.used < hold.state.reserved
                and now < hold.state.until
                and self._paused_until <= now
                and hold.state.expires_at - now > self.limits.lease / 2
            )
            if reusable and (others > 0 or self._linger > 0):
                # Handed to a waiting request at once, or kept a moment for the next one.
                hold.idle_since = self._monotonic()
                self._ready.append(hold)
                self._cond.notify()
                if others <= 0:
                    self._ensure_lingerer()
                    self._linger_wake.set()
                return
            roll_over = others > 0 and hold.rollovers < MAX_ROLLOVERS and self._paused_until <= now
            if others > 0 and not roll_over:
                # Let other instances see the slot free before this one looks again.
                self._next_poll_at = max(self._next_poll_at, self._monotonic() + 0.02 + 0.13 * self._rng())
        if roll_over and self._roll_over(hold):
            return
        self._give_back(hold)

    def _roll_over(self, hold: _Hold) -> bool:
        """Give the slot back and take it again for this process's waiters in one conditional write;
        False when the slot's share of the rate is spent (the caller gives it back)."""
        with hold.lock:
            if hold.lost:
                return True
            now = self._wall()
            freed = give_back(hold.state, hold.used, self.limits, now)
            self._sequence += 1
            wanted = take(
                freed,
                hold.index,
                f"{self._owner}-{self._sequence}",
                self.limits,
                now,
                self.limits.hold_requests,
            )
            if wanted is None:
                return False
            try:
                etag = self._write(hold.index, wanted, hold.etag)
            except (ResourceModifiedError, ResourceNotFoundError):
                hold.lost = True
                self._snapshot = None
                return True
            except _STORAGE_ERRORS as exc:
                # Fail closed: the slot stays held until its lease ends, its reservation counted.
                self._log_error("could not roll a slot over (it frees when its lease ends)", exc)
                return True
            hold.lost = True  # this hold is over; its successor carries the slot on
        successor = _Hold(hold.index, wanted, etag, self._monotonic(), rollovers=hold.rollovers + 1)
        successor.idle_since = self._monotonic()
        with self._cond:
            self._ready.append(successor)
            self._cond.notify()
            self._ensure_lingerer()
        self._linger_wake.set()
        return True

    def _ensure_lingerer(self) -> None:
        """The thread that gives lingering slots back when unused (started once)."""
        if self._lingerer is None:
            self._lingerer = threading.Thread(target=self._linger_loop, name="bc-budget-linger", daemon=True)
            self._lingerer.start()

    def _linger_loop(self) -> None:
        timeout: float | None = None
        while True:
            self._linger_wake.wait(timeout)
            self._linger_wake.clear()
            self.give_back_idle()
            with self._cond:
                ends = [hold.idle_since + self._linger for hold in self._ready if hold.idle_since is not None]
            timeout = max(0.005, min(ends) - self._monotonic()) if ends else None

    def give_back_idle(self) -> None:
        """Give back every slot that has waited unused for `linger` seconds or more."""
        now = self._monotonic()
        with self._cond:
            idle = [
                hold
                for hold in self._ready
                if hold.idle_since is not None and now - hold.idle_since >= self._linger
            ]
            for hold in idle:
                self._ready.remove(hold)
        for hold in idle:
            self._give_back(hold)

    def _give_back(self, hold: _Hold) -> None:
        with hold.lock:
            if hold.lost:
                return
            freed = give_back(hold.state, hold.used, self.limits, self._wall())
            try:
                etag = self._write(hold.index, freed, hold.etag)
            except (ResourceModifiedError, ResourceNotFoundError):
                hold.lost = True
                self._snapshot = None
                return
            except _STORAGE_ERRORS as exc:
                # Fail closed: the slot stays held until its lease ends, its reservation counted.
                self._log_error("could not give a slot back (it frees when its lease ends)", exc)
                return
            hold.lost = True  # given back: never used again
            self._remember(hold.index, freed, etag)

    # -- leases ------------------------------------------------------------------------------

    def _ensure_renewer(self) -> None:
        with self._cond:
            if self._renewer is not None:
                return
            self._renewer = threading.Thread(target=self._renew_loop, name="bc-budget-renew", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.limits.lease / 6)
            self.renew_due()

    def renew_due(self) -> None:
        """Extend the lease of every hold written more than a third of a lease ago."""
        with self._cond:
            holds = [*self._out, *self._ready]
        for hold in holds:
            if self._monotonic() - hold.written_at < self.limits.lease / 3:
                continue
            with hold.lock:
                if hold.lost:
                    continue
                renewed = renew(hold.state, self.limits, self._wall())
                try:
                    hold.etag = self._write(hold.index, renewed, hold.etag)
                except (ResourceModifiedError, ResourceNotFoundError):
                    hold.lost = True
                    log.error(
                        "A Business Central slot was taken while still held", extra={"outcome": "slot_lost"}
                    )
                    continue
                except _STORAGE_ERRORS as exc:
                    self._log_error("could not renew a slot", exc)
                    continue
                hold.state = renewed
                hold.written_at = self._monotonic()

    # -- storage -----------------------------------------------------------------------------

    def _count(self) -> None:
        self.operations += 1

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        self._count()
        with contextlib.suppress(ResourceExistsError):
            self._table.create_table()
        self._table_ready = True

    def _read(self) -> _Snapshot:
        cached = self._snapshot
        if cached is not None and self._monotonic() - cached.read_at < CACHE_SECONDS:
            return cached
        self._ensure_table()
        self._count()
        try:
            rows = list(self._table.query_entities(f"PartitionKey eq '{PARTITION}'"))
        except ResourceNotFoundError:
            self._table_ready = False
            raise
        slots: dict[int, tuple[SlotState, str]] = {}
        pause = 0.0
        for row in rows:
            key = str(row.get("RowKey", ""))
            etag = str(row.metadata.get("etag"))
            if key == PAUSE_ROW:
                pause = float(row.get("until") or 0.0)
            elif key.startswith("slot-"):
                with contextlib.suppress(ValueError):
                    slots[int(key[5:])] = (_state(row), etag)
        snapshot = _Snapshot(slots, pause, self._monotonic())
        self._snapshot = snapshot
        return snapshot

    def _write(self, index: int, state: SlotState, etag: str | None) -> str:
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": slot_row(index),
            "holder": state.holder,
            "expiresAt": float(state.expires_at),
            "until": float(state.until),
            "reserved": int(state.reserved),
            "log": state.log_json(),
        }
        self._count()
        if etag is None:
            metadata = self._table.create_entity(entity)
        else:
            metadata = self._table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        new_etag = str(metadata.get("etag"))
        self._remember(index, state, new_etag)
        return new_etag

    def _remember(self, index: int, state: SlotState, etag: str) -> None:
        cached = self._snapshot
        if cached is not None:
            cached.slots[index] = (state, etag)

    def _log_error(self, what: str, exc: Exception) -> None:
        now = self._monotonic()
        if now - self._last_error_log >= 30 or self._last_error_log == 0.0:
            self._last_error_log = now
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            log.warning(
                "Business Central budget: %s: %s", what, first, extra={"outcome": "budget_storage_error"}
            )


def _state(row: dict[str, object]) -> SlotState:
    return SlotState(
        holder=str(row.get("holder") or ""),
        expires_at=float(row.get("expiresAt") or 0.0),  # type: ignore[arg-type]
        until=float(row.get("until") or 0.0),  # type: ignore[arg-type]
        reserved=int(row.get("reserved") or 0),  # type: ignore[call-overload]
        log=SlotState.parse_log(str(row.get("log") or "")),
    )
