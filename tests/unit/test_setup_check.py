"""The setup check's rules (each answer's fix) and its use case (chains, reuse, deadlines) on fakes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from shared.api.views import setup_report_view
from shared.domain.setup_checks import (
    BC_ROLES,
    GRAPH_ROLES,
    RunRecord,
    ServiceAnswer,
    TokenAnswer,
    bc_company_check,
    customer_template_check,
    graph_business_check,
    item_template_check,
    poison_check,
    reconcile_check,
    sync_check,
    token_check,
)
from shared.services.setup_check import (
    AppAuthentication,
    SetupCheck,
    SetupConfig,
    app_authentication_check,
    check_names,
    settings_failure_report,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _graph(answer: TokenAnswer) -> str:
    check = token_check("graph-token", "Microsoft Graph", "Bookings.Read.All", answer, GRAPH_ROLES)
    return f"{check.status}|{check.detail}|{check.fix}"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (700016, "Application (client) ID"),
        (7000215, "not its Secret ID"),
        (7000222, "create a new client secret"),
        (65001, "Grant admin consent"),
        (90002, "Directory (tenant) ID"),
        (700027, "Certificates & secrets"),
    ],
)
def test_each_aadsts_code_has_its_fix(code: int, words: str) -> None:
    answer = TokenAnswer(error="invalid_client", description=f"AADSTS{code}: something. Trace ID: x")
    status, detail, fix = _graph(answer).split("|")
    assert status == "failed"
    assert f"AADSTS{code}" in detail
    assert words.lower() in fix.lower()


def test_a_token_without_roles_is_missing_consent() -> None:
    status, detail, fix = _graph(TokenAnswer(roles=())).split("|")
    assert status == "failed" and "roles: none" in detail
    assert "Bookings.Read.All" in fix and "Grant admin consent" in fix


def test_a_token_with_the_permission_is_ok() -> None:
    assert _graph(TokenAnswer(roles=("Bookings.Read.All",))).startswith("ok|")
    bc = token_check(
        "bc-token", "BC", "API.ReadWrite.All", TokenAnswer(roles=("API.ReadWrite.All",)), BC_ROLES
    )
    assert bc.status == "ok"


def test_an_unreachable_authority_is_a_warning() -> None:
    answer = TokenAnswer(error="token_endpoint_unreachable", description="ConnectionError", transient=True)
    assert _graph(answer).startswith("warning|")


def test_graph_business_answers() -> None:
    assert graph_business_check("b@x.com", ServiceAnswer(200, record={"displayName": "B"})).status == "ok"
    denied = graph_business_check("b@x.com", ServiceAnswer(403, "ErrorAccessDenied", "Access is denied."))
    assert denied.status == "failed" and "Bookings.Read.All" in denied.fix
    missing = graph_business_check("b@x.com", ServiceAnswer(404, "itemNotFound", "not found"))
    assert missing.status == "failed" and "BOOKINGS_BUSINESS_IDS" in missing.fix
    assert graph_business_check("b@x.com", ServiceAnswer(503, "serviceNotAvailable")).status == "warning"
    assert graph_business_check("b@x.com", ServiceAnswer(None, "", "timeout")).status == "warning"


def test_bc_company_answers() -> None:
    unknown = bc_company_check(
        ServiceAnswer(401, "Authentication_InvalidCredentials"), None, "Production", "c"
    )
    assert unknown.status == "failed" and "Microsoft Entra Applications" in unknown.fix
    forbidden = bc_company_check(ServiceAnswer(403, "Authorization_Failed"), None, "Production", "c")
    assert "does not let the app read" in forbidden.detail and "permission sets" in forbidden.fix
    listed = ServiceAnswer(200, record={"value": [{"id": "right-id", "name": "CRONUS"}]})
    company = bc_company_check(ServiceAnswer(404, "BadRequest_NotFound"), listed, "Production", "wrong")
    assert "BC_COMPANY_ID" in company.fix and "CRONUS: right-id" in company.fix
    environment = bc_company_check(
        ServiceAnswer(404, "BadRequest_NotFound"), ServiceAnswer(404), "Nowhere", "c"
    )
    assert "BC_ENVIRONMENT" in environment.fix
    tenant = bc_company_check(
        ServiceAnswer(400, "Internal_TenantNotFound", "Tenant not found"), None, "P", "c"
    )
    assert tenant.status == "failed" and "BC_ENVIRONMENT" in tenant.fix and "ENTRA_TENANT_ID" in tenant.fix


def test_every_failed_or_warning_check_has_a_fix() -> None:
    answers = [
        ServiceAnswer(s, c)
        for s, c in ((None, ""), (401, "x"), (403, "x"), (404, "x"), (429, "x"), (500, "x"))
    ]
    checks = [graph_business_check("b@x.com", a) for a in answers]
    checks += [bc_company_check(a, None, "P", "c") for a in answers]
    checks += [customer_template_check("C", a) for a in [*answers, ServiceAnswer(200)]]
    checks += [
        item_template_check("I", a)
        for a in [*answers, ServiceAnswer(200), ServiceAnswer(200, record={"type": "Inventory"})]
    ]
    checks += [
        token_check("t", "API", "P", TokenAnswer(error=e, description=d), GRAPH_ROLES)
        for e, d in (("invalid_client", "AADSTS1: x"), ("invalid_client", ""), ("unreachable", "x"))
    ]
    checks += [poison_check(2), sync_check([], "s"), reconcile_check(None, "s")]
    for check in checks:
        assert check.status != "ok"
        assert check.fix.strip().endswith(".") and len(check.fix) > 20, check


def test_templates() -> None:
    assert customer_template_check("CT", ServiceAnswer(200, record=None)).status == "failed"
    blocked = customer_template_check("CT", ServiceAnswer(200, record={"blocked": "All"}))
    assert blocked.status == "ok" and "All" in blocked.detail
    unblocked = customer_template_check("CT", ServiceAnswer(200, record={"blocked": "_x0020_"}))
    assert unblocked.status == "ok" and "blocked" not in unblocked.detail
    assert item_template_check("IT", ServiceAnswer(200, record=None)).status == "failed"
    non_inventory = item_template_check("IT", ServiceAnswer(200, record={"type": "Non_x002D_Inventory"}))
    assert non_inventory.status == "failed" and "Non-Inventory" in non_inventory.detail
    assert (
        item_template_check("IT", ServiceAnswer(200, record={"type": "Service", "blocked": True})).status
        == "ok"
    )


def test_stored_run_state() -> None:
    assert poison_check(0).status == "ok"
    assert poison_check(3).status == "warning"
    assert sync_check([RunRecord(None, None, "", "a")], "0 */15 * * * *").status == "warning"
    failed = sync_check([RunRecord(NOW, "failed", "Graph HTTP 403 ErrorAccessDenied", "a")], "s")
    assert failed.status == "failed" and "403" in failed.detail
    assert sync_check([RunRecord(NOW, "succeeded", "", "a")], "s").status == "ok"
    assert reconcile_check(None, "s").status == "warning"
    assert reconcile_check(RunRecord(NOW, "failed", "reconcile: boom"), "s").status == "failed"
    assert reconcile_check(RunRecord(NOW, "succeeded"), "s").status == "ok"


def test_app_authentication() -> None:
    assert app_authentication_check(AppAuthentication("azure", None)).status == "ok"
    off = app_authentication_check(AppAuthentication("azure", "off"))
    assert off.status == "failed" and "Authentication" in off.fix
    assert app_authentication_check(AppAuthentication("devhost", None)).status == "ok"
    assert app_authentication_check(AppAuthentication("terminal", None)).status == "skipped"


def test_invalid_settings_fail_one_check_and_skip_the_rest() -> None:
    report = settings_failure_report("BC_COMPANY_ID is not a GUID", NOW)
    assert report.failed
    statuses = {check.name: check.status for check in report.checks}
    assert statuses.pop("settings") == "failed"
    assert set(statuses.values()) == {"skipped"}


class FakeProbes:
    """Answers as configured; counts calls; `block` holds a probe until released."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.graph_token = TokenAnswer(roles=("Bookings.Read.All",))
        self.bc_token = TokenAnswer(roles=("API.ReadWrite.All",))
        self.company = ServiceAnswer(200, record={"displayName": "CRONUS"})
        self.block = threading.Event()
        self.blocking: set[str] = set()

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.blocking:
            self.block.wait(10)

    def probe_storage(self) -> None:
        self._call("storage")

    def token(self, resource: str) -> TokenAnswer:
        self._call(f"token:{resource}")
        return self.graph_token if resource == "graph" else self.bc_token

    def graph_business(self, business_id: str) -> ServiceAnswer:
        self._call(f"graph:{business_id}")
        return ServiceAnswer(200, record={"displayName": business_id})

    def bc_company(self) -> ServiceAnswer:
        self._call("company")
        return self.company

    def bc_companies(self) -> ServiceAnswer:
        self._call("companies")
        return ServiceAnswer(404)

    def bc_record(self, collection: str, number: str) -> ServiceAnswer:
        self._call(f"record:{collection}")
        return ServiceAnswer(200, record={"type": "Service", "blocked": False})

    def poison_depth(self) -> int:
        self._call("poison")
        return 0

    def last_syncs(self, business_ids: Sequence[str]) -> list[RunRecord]:
        return [RunRecord(NOW, "succeeded", "", b) for b in business_ids]

    def last_reconcile(self) -> RunRecord | None:
        return RunRecord(NOW, "succeeded")


CONFIG = SetupConfig(
    business_ids=("a@x.com", "b@x.com"),
    environment="Production",
    company_id="c",
    customer_template="CT",
    item_template="IT",
    sync_customers=True,
    sync_services=True,
    sync_schedule="0 */15 * * * *",
    reconcile_schedule="0 5 * * * *",
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _service(probes: FakeProbes, clock: Clock, timeout: float = 5.0) -> SetupCheck:
    return SetupCheck(
        probes, CONFIG, lambda: AppAuthentication("devhost", None), clock, probe_timeout=timeout
    )


def test_every_check_runs_and_a_report_is_reused_for_sixty_seconds() -> None:
    probes, clock = FakeProbes(), Clock()
    service = _service(probes, clock)
    report = service.report()
    assert [c.name for c in report.checks] != []
    assert sorted(c.name for c in report.checks) == sorted(check_names(CONFIG.business_ids))
    assert {c.status for c in report.checks} == {"ok"}
    calls = len(probes.calls)
    clock.now += timedelta(seconds=59)
    assert service.report() is report
    assert len(probes.calls) == calls
    clock.now += timedelta(seconds=2)
    assert service.report() is not report
    assert len(probes.calls) == 2 * calls


def test_a_failed_token_skips_what_needs_it() -> None:
    probes = FakeProbes()
    probes.bc_token = TokenAnswer(error="invalid_client", description="AADSTS7000222: expired")
    report = _service(probes, Clock()).report()
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["bc-token"] == "failed"
    assert statuses["bc-company"] == statuses["bc-item-template"] == "skipped"
    assert "company" not in probes.calls
    assert setup_report_view(report)["checks"][0]["name"] == "bc-token"  # failed first


def test_a_probe_that_hangs_is_reported_as_timed_out() -> None:
    probes = FakeProbes()
    probes.blocking = {"company"}
    try:
        report = _service(probes, Clock(), timeout=0.2).report()
    finally:
        probes.block.set()
    company = next(c for c in report.checks if c.name == "bc-company")
    assert company.status == "warning" and "no answer within" in company.detail


def test_templates_are_not_read_when_creation_is_off() -> None:
    probes = FakeProbes()
    config = SetupConfig(**{**CONFIG.__dict__, "sync_customers": False, "item_template": None})
    service = SetupCheck(probes, config, lambda: AppAuthentication("devhost", None), Clock())
    statuses = {c.name: c.status for c in service.report().checks}
    assert statuses["bc-customer-template"] == statuses["bc-item-template"] == "skipped"
    assert not [call for call in probes.calls if call.startswith("record:")]


def test_a_probe_that_raises_is_reported_and_the_rest_still_run() -> None:
    probes = FakeProbes()

    def broken() -> ServiceAnswer:
        raise RuntimeError("adapter bug")

    probes.bc_company = broken  # type: ignore[method-assign]
    statuses = {c.name: (c.status, c.detail) for c in _service(probes, Clock()).report().checks}
    assert statuses["bc-company"][0] == "failed" and "RuntimeError" in statuses["bc-company"][1]
    assert statuses["graph-token"][0] == "ok" and statuses["storage"][0] == "ok"
