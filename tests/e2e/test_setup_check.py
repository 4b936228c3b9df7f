"""Issue 22 on the whole stack: `GET /api/setup-check` against the sandbox, healthy and broken.

Each failure a real tenant meets is switched on through the sandbox's admin API (answers modelled
in `sandbox/FIDELITY.md`, "Setup check") and the test asserts the failed check and its fix.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared.adapters.invoice_queue import POISON_QUEUE
from shared.api.auth import ROLE_READ
from tests.auth_support import sign_in
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


def fetch(stack: Stack) -> dict[str, Any]:
    """The report as an administrator signed in to the portal reads it (a broken app registration
    cannot get itself a token for the API, a person still can)."""
    reader = sign_in(stack.url, roles=[ROLE_READ])
    response = reader.get(f"{stack.url}/api/setup-check", timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def setup_check(stack: Stack) -> dict[str, dict[str, str]]:
    document = fetch(stack)
    assert document["checkedAt"].endswith("Z")
    return {check["name"]: check for check in document["checks"]}


def expected_names(stack: Stack) -> set[str]:
    return {
        "settings",
        "storage",
        "graph-token",
        *(f"graph-business:{b}" for b in stack.business_ids),
        "bc-token",
        "bc-company",
        "bc-customer-template",
        "bc-item-template",
        "app-authentication",
        "poison-queue",
        "last-sync",
        "last-reconcile",
    }


def statuses(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def test_a_healthy_sandbox_passes_every_check_after_the_first_runs(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    assert stack.run_function("reconcile_invoices") == ["Succeeded"]
    checks = setup_check(stack)
    assert set(checks) == expected_names(stack)
    assert statuses(checks) == dict.fromkeys(checks, "ok"), checks
    assert "succeeded" in checks["last-sync"]["detail"]
    assert "Service" in checks["bc-item-template"]["detail"]
    secret = stack.settings["ENTRA_CLIENT_SECRET"]
    assert secret not in str(fetch(stack))


def test_before_the_first_runs_the_timers_are_warnings_and_failed_checks_come_first(stack: Stack) -> None:
    stack.admin.edit_bc_record("items", stack.sandbox.identity.item_template, {"type": "Inventory"})
    names = [check["name"] for check in fetch(stack)["checks"]]
    assert names[0] == "bc-item-template"
    checks = setup_check(stack)
    assert checks["last-sync"]["status"] == "warning"
    assert checks["last-reconcile"]["status"] == "warning"


def test_results_are_reused_for_sixty_seconds(stack: Stack) -> None:
    first = fetch(stack)
    before = stack.admin.counters()["services"]
    assert fetch(stack) == first
    after = stack.admin.counters()["services"]
    for service in ("entra", "graph", "bc"):  # nothing was asked again
        assert after.get(service) == before.get(service), service
    stack.clock.advance(61)
    assert fetch(stack)["checkedAt"] != first["checkedAt"]
    assert stack.admin.counters()["services"]["bc"]["total"] > before["bc"]["total"]


def test_a_reader_may_check_and_an_anonymous_caller_may_not(stack: Stack) -> None:
    reader = sign_in(stack.url, roles=[ROLE_READ])
    assert reader.get(f"{stack.url}/api/setup-check", timeout=30).status_code == 200
    assert stack.api("GET", "setup-check", authenticated=False).status_code == 401


def _broken(stack: Stack, **switches: Any) -> dict[str, dict[str, str]]:
    stack.admin.break_app(stack.settings["ENTRA_CLIENT_ID"], **switches)
    return setup_check(stack)


def test_a_business_the_app_may_not_read(stack: Stack) -> None:
    denied = stack.business_ids[0]
    checks = _broken(stack, deniedBusinesses=[denied])
    check = checks[f"graph-business:{denied}"]
    assert check["status"] == "failed"
    assert "403" in check["detail"]
    assert "Bookings.Read.All" in check["fix"] and "Grant admin consent" in check["fix"]
    for other in stack.business_ids[1:]:
        assert checks[f"graph-business:{other}"]["status"] == "ok"


def test_a_business_id_that_does_not_exist(make_stack: Any) -> None:
    stack = make_stack(BOOKINGS_BUSINESS_IDS="nobody@contoso.onmicrosoft.com")
    check = setup_check(stack)["graph-business:nobody@contoso.onmicrosoft.com"]
    assert check["status"] == "failed"
    assert "BOOKINGS_BUSINESS_IDS" in check["fix"] and "@" in check["fix"]


def test_graph_without_admin_consent_token_issued_without_roles(stack: Stack) -> None:
    checks = _broken(stack, consented={"graph": []})
    assert checks["graph-token"]["status"] == "failed"
    assert "roles: none" in checks["graph-token"]["detail"]
    assert "Bookings.Read.All" in checks["graph-token"]["fix"]
    assert "Grant admin consent" in checks["graph-token"]["fix"]
    assert all(checks[f"graph-business:{b}"]["status"] == "skipped" for b in stack.business_ids)


def test_an_app_business_central_does_not_know(stack: Stack) -> None:
    checks = _broken(stack, businessCentralRegistered=False)
    check = checks["bc-company"]
    assert check["status"] == "failed"
    assert "401" in check["detail"] and "Authentication_InvalidCredentials" in check["detail"]
    assert "Microsoft Entra Applications" in check["fix"] and "D365 BUS FULL ACCESS" in check["fix"]
    assert checks["bc-customer-template"]["status"] == "skipped"


def test_an_expired_secret(stack: Stack) -> None:
    checks = _broken(stack, secretExpired=True)
    for name in ("graph-token", "bc-token"):
        assert checks[name]["status"] == "failed"
        assert "AADSTS7000222" in checks[name]["detail"]
        assert "Certificates & secrets" in checks[name]["fix"]
        assert "ENTRA_CLIENT_SECRET" in checks[name]["fix"]


def test_a_wrong_secret(make_stack: Any) -> None:
    stack = make_stack(ENTRA_CLIENT_SECRET="not-the-secret")
    check = setup_check(stack)["bc-token"]
    assert check["status"] == "failed" and "AADSTS7000215" in check["detail"]
    assert "not its Secret ID" in check["fix"]


def test_an_unknown_application(make_stack: Any) -> None:
    stack = make_stack(ENTRA_CLIENT_ID="11111111-2222-3333-4444-555555555555")
    check = setup_check(stack)["graph-token"]
    assert check["status"] == "failed" and "AADSTS700016" in check["detail"]
    assert "Application (client) ID" in check["fix"]


def test_a_missing_template(make_stack: Any) -> None:
    stack = make_stack(CUSTOMER_TEMPLATE="NO-SUCH-CUST")
    check = setup_check(stack)["bc-customer-template"]
    assert check["status"] == "failed"
    assert "CUSTOMER_TEMPLATE" in check["fix"] and "existing customer" in check["fix"]


def test_an_item_template_that_is_not_a_service(stack: Stack) -> None:
    stack.admin.edit_bc_record("items", stack.sandbox.identity.item_template, {"type": "Inventory"})
    check = setup_check(stack)["bc-item-template"]
    assert check["status"] == "failed"
    assert "Inventory" in check["detail"]
    assert "type Service" in check["fix"]


def test_templates_are_skipped_when_creation_is_off(make_stack: Any) -> None:
    stack = make_stack(SYNC_CUSTOMERS="false", SYNC_SERVICES="false")
    checks = setup_check(stack)
    assert checks["bc-customer-template"]["status"] == "skipped"
    assert checks["bc-item-template"]["status"] == "skipped"


def test_a_wrong_company_names_the_companies_there(make_stack: Any) -> None:
    stack = make_stack(BC_COMPANY_ID="00000000-1111-2222-3333-444444444444")
    check = setup_check(stack)["bc-company"]
    assert check["status"] == "failed"
    assert "BC_COMPANY_ID" in check["fix"]
    assert stack.sandbox.identity.company_id in check["fix"]


def test_a_wrong_environment(make_stack: Any) -> None:
    stack = make_stack(BC_ENVIRONMENT="Nowhere")
    check = setup_check(stack)["bc-company"]
    assert check["status"] == "failed"
    assert "BC_ENVIRONMENT" in check["fix"]


def test_poison_messages_and_a_failed_sync_show(stack: Stack) -> None:
    stack.admin.break_app(stack.settings["ENTRA_CLIENT_ID"], consented={"graph": []})
    stack.run_function("sync_bookings")
    poison = QueueClient.from_connection_string(stack.connection_string, POISON_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        poison.create_queue()
    poison.send_message("x")
    checks = setup_check(stack)
    assert checks["last-sync"]["status"] == "failed"
    assert checks["poison-queue"]["status"] == "warning"
    assert "1 message" in checks["poison-queue"]["detail"]


def test_a_probe_that_does_not_answer_in_time_says_so(stack: Stack) -> None:
    """Business Central hangs (sandbox latency) past the check's deadline: the answer comes anyway."""
    stack.container.setup_check.probe_timeout = 1.0  # the deadline, shortened for the test
    stack.admin.set_faults({"latency": {"bc": 4.0}})
    checks = setup_check(stack)
    assert checks["bc-company"]["status"] == "warning"
    assert "no answer within 1 s" in checks["bc-company"]["detail"]
    assert "Check again" in checks["bc-company"]["fix"]
    assert checks["bc-item-template"]["status"] == "skipped"
    assert checks["graph-token"]["status"] == "ok"  # the other chains were not held up
