"""The setup check: tells an administrator what is wrong with the tenant, like the original's setup page.

Three independent chains run side by side: storage (then the poison queue and the timers' stored
run state), Graph (token, then one read per business) and Business Central (token, company, then
the templates). A later check of a chain is skipped when an earlier one failed, so one cause shows
up once, with its fix.

Bounded and safe: every probe is a read; the Business Central ones pass the shared budget; one run
costs one Graph request per business and at most four Business Central requests; a report is reused
for `REUSE_SECONDS`, and concurrent callers share one run; every probe has a deadline, and a probe
that misses it is reported as such rather than holding the request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from shared.domain.setup_checks import (
    BC_ROLES,
    FAILED,
    GRAPH_ROLES,
    OK,
    SKIPPED,
    WARNING,
    Check,
    ServiceAnswer,
    bc_company_check,
    customer_template_check,
    graph_business_check,
    item_template_check,
    poison_check,
    reconcile_check,
    skipped,
    sync_check,
    token_check,
)
from shared.services.ports import SetupProbes

T = TypeVar("T")

REUSE_SECONDS = 60
PROBE_TIMEOUT_SECONDS = 20.0
CHECK_NAMES = (
    "settings",
    "storage",
    "graph-token",
    "bc-token",
    "bc-company",
    "bc-customer-template",
    "bc-item-template",
    "app-authentication",
    "poison-queue",
    "last-sync",
    "last-reconcile",
)


class ProbeFailedError(Exception):
    """A probe gave no answer: it missed its deadline (`timed_out`), or it raised."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class SetupConfig:
    """The settings the checks name (no secret is among them)."""

    business_ids: tuple[str, ...]
    environment: str
    company_id: str
    customer_template: str | None
    item_template: str | None
    sync_customers: bool
    sync_services: bool
    sync_schedule: str
    reconcile_schedule: str
    price_source: str = "bookings"


@dataclass(frozen=True)
class AppAuthentication:
    """Where the app runs and what App Service Authentication looks like there."""

    where: str  # "azure" | "devhost" | "terminal"
    problem: str | None  # why callers cannot be identified (Azure, authentication off), else None


@dataclass(frozen=True)
class SetupReport:
    checked_at: datetime
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(check.status == FAILED for check in self.checks)


def settings_failure_report(error: str, now: datetime) -> SetupReport:
    """The report when the settings do not load: the one failed check, the rest skipped."""
    checks = [
        Check(
            "settings",
            FAILED,
            error,
            "Fix the setting named above in the app settings (or local.settings.json).",
        )
    ]
    checks += [skipped(name, "not checked: the settings are invalid") for name in CHECK_NAMES[1:]]
    return SetupReport(now, tuple(checks))


def price_source_text(price_source: str) -> str:
    """PRICE_SOURCE as the settings check says it."""
    if price_source == "businessCentral":
        return "prices from Business Central (PRICE_SOURCE=businessCentral: no unitPrice on invoice lines)"
    return "prices from Bookings (PRICE_SOURCE=bookings)"


def app_authentication_check(state: AppAuthentication) -> Check:
    name = "app-authentication"
    if state.where == "azure":
        if state.problem is None:
            return Check(name, OK, "App Service Authentication is on: callers are identified by the platform")
        return Check(
            name,
            FAILED,
            "App Service Authentication is off: the API answers 503 to every caller",
            "In the Azure portal open the function app > Authentication, add the Microsoft identity "
            "provider with the app registration and 'Require authentication' (docs/operations.md), or "
            "deploy infra/ again, which configures it.",
        )
    if state.where == "devhost":
        return Check(name, OK, "running locally: devhost plays App Service Authentication")
    return Check(
        name,
        SKIPPED,
        "checked only where the app runs: a terminal cannot see the function app's platform settings",
        "After deploying, open GET /api/setup-check (or the portal's Settings view) to check it.",
    )


class SetupCheck:
    """Runs the checks (at most once per `reuse_seconds`) and keeps the last report."""

    def __init__(
        self,
        probes: SetupProbes,
        config: SetupConfig,
        authentication: Callable[[], AppAuthentication],
        clock: Callable[[], datetime],
        *,
        probe_timeout: float = PROBE_TIMEOUT_SECONDS,
        reuse_seconds: float = REUSE_SECONDS,
    ) -> None:
        self.probes = probes
        self.config = config
        self._authentication = authentication
        self._clock = clock
        self.probe_timeout = probe_timeout
        self._reuse = timedelta(seconds=reuse_seconds)
        self._lock = threading.Lock()
        self._last: SetupReport | None = None
        # Probes run here, so a stuck one never holds the caller past its deadline. Sized for the
        # chains plus a handful of businesses; more businesses wait their turn.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="setup-probe")
        self._chains = ThreadPoolExecutor(max_workers=3, thread_name_prefix="setup-check")

    def report(self) -> SetupReport:
        """The last report if younger than `reuse_seconds`; otherwise a new one (one run at a time)."""
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last.checked_at < self._reuse:
                return self._last
            self._last = self._run(now)
            return self._last

    def _run(self, now: datetime) -> SetupReport:
        config = self.config
        settings = Check(
            "settings",
            OK,
            f"valid: {len(config.business_ids)} Bookings business(es), Business Central environment "
            f"{config.environment}, {price_source_text(config.price_source)}",
        )
        chains = [
            self._chains.submit(chain) for chain in (self._storage_chain, self._graph_chain, self._bc_chain)
        ]
        checks = [settings, app_authentication_check(self._authentication())]
        for chain in chains:
            checks += chain.result()  # each chain bounds its own probes
        return SetupReport(now, tuple(checks))

    # -- probes with a deadline ----------------------------------------------------------------

    def _within(self, probe: Callable[[], T]) -> T | ProbeFailedError:
        """The probe's answer, or why there is none (no answer in time, or it raised)."""
        future: Future[T] = self._pool.submit(probe)
        try:
            return future.result(timeout=self.probe_timeout)
        except FutureTimeout:
            return ProbeFailedError(f"no answer within {self.probe_timeout:g} s", timed_out=True)
        except Exception as exc:  # an unexpected failure must not hide the other checks
            return ProbeFailedError(f"an error ({type(exc).__name__})")

    def _no_answer(self, name: str, what: str, exc: ProbeFailedError) -> Check:
        """A deadline missed is a warning (slow or busy, like a 5xx); a probe that raised failed."""
        if exc.timed_out:
            return Check(
                name,
                WARNING,
                f"{what} gave {exc}",
                "Check again in a minute; if it stays, check the service's status and the app's network.",
            )
        return Check(name, FAILED, f"{what} gave {exc}", "Check again; if it stays, see the app's log.")

    # -- chains --------------------------------------------------------------------------------

    def _storage_chain(self) -> list[Check]:
        names = ("poison-queue", "last-sync", "last-reconcile")

        def probe() -> Exception | None:
            try:
                self.probes.probe_storage()
            except Exception as exc:  # any failure to reach storage is what this check reports
                return exc
            return None

        result = self._within(probe)
        if isinstance(result, ProbeFailedError):
            return [self._no_answer("storage", "storage", result)] + [
                skipped(n, "not checked: storage failed") for n in names
            ]
        if result is not None:
            check = Check(
                "storage",
                FAILED,
                f"tables or queues unreachable: {type(result).__name__}",
                "Check AzureWebJobsStorage (a connection string, or AzureWebJobsStorage__tableServiceUri "
                "and __queueServiceUri with the app's managed identity holding Storage Table Data "
                "Contributor and Storage Queue Data Contributor) and the storage account's network rules; "
                "locally, UseDevelopmentStorage=true needs Azurite running.",
            )
            return [check] + [skipped(n, "not checked: storage failed") for n in names]
        return [Check("storage", OK, "tables and queues reachable"), *self._stored_state()]

    def _stored_state(self) -> list[Check]:
        config = self.config
        checks: list[Check] = []
        for name, probe, judge in (
            ("poison-queue", self.probes.poison_depth, poison_check),
            (
                "last-sync",
                lambda: self.probes.last_syncs(config.business_ids),
                lambda r: sync_check(r, config.sync_schedule),
            ),
            (
                "last-reconcile",
                self.probes.last_reconcile,
                lambda r: reconcile_check(r, config.reconcile_schedule),
            ),
        ):
            result = self._within(_guarded(probe))
            if isinstance(result, ProbeFailedError):
                checks.append(self._no_answer(name, "storage", result))
            elif isinstance(result, Exception):
                checks.append(
                    Check(
                        name,
                        WARNING,
                        f"could not be read: {type(result).__name__}",
                        "Check again in a minute.",
                    )
                )
            else:
                checks.append(judge(result))
        return checks

    def _token(self, name: str, resource: str, api: str, permission: str, needed: frozenset[str]) -> Check:
        answer = self._within(lambda: self.probes.token(resource))
        if isinstance(answer, ProbeFailedError):
            return self._no_answer(name, "Entra", answer)
        return token_check(name, api, permission, answer, needed)

    def _graph_chain(self) -> list[Check]:
        token = self._token("graph-token", "graph", "Microsoft Graph", "Bookings.Read.All", GRAPH_ROLES)
        names = [f"graph-business:{business_id}" for business_id in self.config.business_ids]
        if token.status != OK:
            return [token] + [skipped(n, "not checked: no usable Graph token") for n in names]
        futures = [self._pool.submit(self.probes.graph_business, b) for b in self.config.business_ids]
        deadline = time.monotonic() + self.probe_timeout
        checks = [token]
        for business_id, future in zip(self.config.business_ids, futures, strict=True):
            name = f"graph-business:{business_id}"
            try:
                answer = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                checks.append(
                    self._no_answer(
                        name,
                        "Graph",
                        ProbeFailedError(f"no answer within {self.probe_timeout:g} s", timed_out=True),
                    )
                )
                continue
            except Exception as exc:  # an adapter bug must not hide the other checks
                checks.append(
                    Check(name, WARNING, f"could not be checked: {type(exc).__name__}", "See the app's log.")
                )
                continue
            checks.append(graph_business_check(business_id, answer))
        return checks

    def _bc_chain(self) -> list[Check]:
        token = self._token(
            "bc-token", "businessCentral", "Dynamics 365 Business Central", "API.ReadWrite.All", BC_ROLES
        )
        if token.status != OK:
            return [token, *self._skip_bc("not checked: no usable Business Central token", company=True)]
        company = self._bc_company()
        if company.status != OK:
            return [token, company, *self._skip_bc("not checked: the company does not answer", company=False)]
        return [token, company, self._customer_template(), self._item_template()]

    def _skip_bc(self, why: str, *, company: bool) -> list[Check]:
        names = (["bc-company"] if company else []) + ["bc-customer-template", "bc-item-template"]
        return [skipped(name, why) for name in names]

    def _bc_company(self) -> Check:
        config = self.config
        answer = self._within(self.probes.bc_company)
        if isinstance(answer, ProbeFailedError):
            return self._no_answer("bc-company", "Business Central", answer)
        companies: ServiceAnswer | None = None
        if answer.status == 404:  # which is wrong: the environment or the company id?
            listed = self._within(self.probes.bc_companies)
            companies = None if isinstance(listed, ProbeFailedError) else listed
        return bc_company_check(answer, companies, config.environment, config.company_id)

    def _customer_template(self) -> Check:
        config = self.config
        if not config.sync_customers:
            return skipped("bc-customer-template", "customers are not created (SYNC_CUSTOMERS is off)")
        if not config.customer_template:
            return skipped(
                "bc-customer-template",
                "no CUSTOMER_TEMPLATE is set: new customers get Business Central's defaults",
            )
        number = config.customer_template
        answer = self._within(lambda: self.probes.bc_record("customers", number))
        if isinstance(answer, ProbeFailedError):
            return self._no_answer("bc-customer-template", "Business Central", answer)
        return customer_template_check(number, answer)

    def _item_template(self) -> Check:
        config = self.config
        if not config.sync_services:
            return skipped("bc-item-template", "items are not created (SYNC_SERVICES is off)")
        if not config.item_template:
            return skipped(
                "bc-item-template", "no ITEM_TEMPLATE is set: new items get Business Central's defaults"
            )
        number = config.item_template
        answer = self._within(lambda: self.probes.bc_record("items", number))
        if isinstance(answer, ProbeFailedError):
            return self._no_answer("bc-item-template", "Business Central", answer)
        return item_template_check(number, answer)


def _guarded(probe: Callable[[], T]) -> Callable[[], T | Exception]:
    def run() -> T | Exception:
        try:
            return probe()
        except Exception as exc:  # reported as the check's detail (its type only)
            return exc

    return run


def check_names(business_ids: Sequence[str]) -> list[str]:
    """Every check a report holds, in the contract's order."""
    return [*CHECK_NAMES[:3], *(f"graph-business:{b}" for b in business_ids), *CHECK_NAMES[3:]]
