"""Business Central client against the sandbox over HTTPS with real MSAL tokens."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox import SandboxHandle
from shared.adapters.business_central import BusinessCentralClient, BusinessCentralError, odata_string
from shared.adapters.http_retry import RetryPolicy
from shared.adapters.token_provider import TokenProvider
from shared.settings import load_settings
from tests.conftest import product_settings
from tests.helpers import ManualWaits


def make_client(sandbox: SandboxHandle, conn: str, **options: Any) -> BusinessCentralClient:
    overrides = {k: v for k, v in options.pop("settings", {}).items()}
    settings = load_settings(product_settings(conn, **{**sandbox.settings, **overrides}))
    return BusinessCentralClient(
        base_url=settings.bc_base_url,
        tenant_id=settings.tenant_id,
        environment=settings.bc_environment,
        company_id=settings.bc_company_id,
        token=TokenProvider(settings).business_central_token,
        **options,
    )


def invoice_body(customer_id: str, number: str, **line: Any) -> dict[str, Any]:
    return {
        "customerId": customer_id,
        "externalDocumentNumber": number,
        "invoiceDate": "2026-02-01",
        "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "SVC-0001", "quantity": 1, **line}],
    }


@pytest.fixture
def bc(fresh_sandbox: SandboxHandle, storage_connection_string: str) -> BusinessCentralClient:
    return make_client(fresh_sandbox, storage_connection_string, sleep=lambda _s: None)


def test_odata_string_doubles_quotes() -> None:
    assert odata_string("O'Brien@x") == "'O''Brien@x'"
    assert odata_string("' or 1 eq 1 or '") == "''' or 1 eq 1 or '''"


def test_customer_email_match_ignores_case_and_quotes_are_safe(bc: BusinessCentralClient) -> None:
    [bob] = bc.find_customers_by_email("BOB.KELLY@TailspinToys.com")
    assert bob.display_name == "Bob Kelly"
    [siobhan] = bc.find_customers_by_email("o'brien@fourthcoffee.com")
    assert siobhan.email == "O'Brien@FourthCoffee.com"
    assert bc.find_customers_by_email("' or 1 eq 1 or email eq '") == []
    assert bc.find_customers_by_email("x' or email ne '") == []


def test_service_items_match_by_name_ignoring_case_and_only_services(bc: BusinessCentralClient) -> None:
    [training] = bc.find_service_items_by_name("personal TRAINING")
    assert training.number == "SVC-0002" and training.type == "Service"
    assert bc.find_service_items_by_name("Wine pairing") == []  # exists, but as an Inventory item


def test_throttling_is_retried_honouring_retry_after(
    fresh_sandbox: SandboxHandle, storage_connection_string: str
) -> None:
    waits = ManualWaits()
    client = make_client(fresh_sandbox, storage_connection_string, **waits.client_options())
    fresh_sandbox.admin.set_faults({"failures": {"bc": [{"status": 429, "count": 2, "retryAfter": 3}]}})
    assert client.find_customers_by_email("jordanm@contoso.com")
    assert waits.sleeps == [3.0, 3.0]  # the budget's pause ends with the retry's own wait
    assert client.request_count == 3


def test_a_429_on_the_invoice_post_is_retried_in_place(bc: BusinessCentralClient, fresh_sandbox) -> None:
    [bob] = bc.find_customers_by_email("bob.kelly@tailspintoys.com")
    fresh_sandbox.admin.set_faults({"failures": {"bc": [{"status": 429, "count": 1, "retryAfter": 1}]}})
    invoice = bc.create_invoice(invoice_body(bob.id, "BKG-RETRY"))
    assert invoice.status == "Draft" and invoice.external_document_number == "BKG-RETRY"
    assert len(bc.find_invoices_by_external_document_number("BKG-RETRY")) == 1


@pytest.mark.parametrize(
    "fault", [{"dropAfterCommit": 1}, {"failures": {"bc": [{"status": 504, "count": 1}]}}]
)
def test_an_invoice_post_without_answer_is_not_repeated(
    bc: BusinessCentralClient, fresh_sandbox: SandboxHandle, fault: dict[str, Any]
) -> None:
    [bob] = bc.find_customers_by_email("bob.kelly@tailspintoys.com")
    before = fresh_sandbox.app.counters.route("bc", "POST companies({companyId})/salesInvoices")
    fresh_sandbox.admin.set_faults(fault)
    with pytest.raises(BusinessCentralError) as caught:
        bc.create_invoice(invoice_body(bob.id, "BKG-AMBIGUOUS"))
    assert caught.value.transient and caught.value.may_have_committed
    after = fresh_sandbox.app.counters.route("bc", "POST companies({companyId})/salesInvoices")
    assert after - before == 1  # sent once, never blindly again
    committed = 1 if "dropAfterCommit" in fault else 0
    assert len(bc.find_invoices_by_external_document_number("bkg-ambiguous")) == committed


def test_a_validation_error_is_permanent_with_business_centrals_message(bc: BusinessCentralClient) -> None:
    [jordan] = bc.find_customers_by_email("jordanm@contoso.com")  # blocked for invoices
    with pytest.raises(BusinessCentralError) as caught:
        bc.create_invoice(invoice_body(jordan.id, "BKG-BLOCKED"))
    assert not caught.value.transient
    # An AL error of the API page (`Customer.CheckBlockedCustOnDocs`): the Application_* family.
    assert caught.value.code and caught.value.code.startswith("Application_")
    assert "blocked" in caught.value.message


def test_a_bad_credential_is_transient_and_never_shows_the_secret(
    fresh_sandbox: SandboxHandle, storage_connection_string: str
) -> None:
    secret = "a-wrong-secret-that-must-not-leak"
    client = make_client(
        fresh_sandbox,
        storage_connection_string,
        settings={"ENTRA_CLIENT_SECRET": secret},
        sleep=lambda _s: None,
    )
    with pytest.raises(BusinessCentralError) as caught:
        client.find_customers_by_email("bob.kelly@tailspintoys.com")
    assert caught.value.transient
    assert secret not in str(caught.value)


def test_at_most_five_requests_are_in_flight_per_process(
    fresh_sandbox: SandboxHandle, storage_connection_string: str
) -> None:
    def burst(client: BusinessCentralClient) -> dict[str, Any]:
        fresh_sandbox.app.reset(counters=True, faults=True)
        fresh_sandbox.admin.set_faults({"latency": {"bc": 0.15}})
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda _i: client.find_customers_by_email("jordanm@contoso.com"), range(16)))
        return fresh_sandbox.app.faults.stats()["concurrency"]["bc"]

    ours = burst(make_client(fresh_sandbox, storage_connection_string))
    assert ours["maxRunning"] == 5 and ours["maxQueued"] == 0
    # Control: without the limit Business Central itself would have to queue our requests.
    unlimited = make_client(fresh_sandbox, storage_connection_string, limiter=threading.BoundedSemaphore(16))
    assert burst(unlimited)["maxQueued"] > 0


def test_retries_are_bounded(fresh_sandbox: SandboxHandle, storage_connection_string: str) -> None:
    client = make_client(
        fresh_sandbox, storage_connection_string, retry=RetryPolicy(max_attempts=3), sleep=lambda _s: None
    )
    fresh_sandbox.admin.set_faults({"failures": {"bc": [{"status": 503, "fraction": 1.0}]}})
    with pytest.raises(BusinessCentralError) as caught:
        client.find_customers_by_email("jordanm@contoso.com")
    assert caught.value.transient and caught.value.status == 503
    assert client.request_count == 3
