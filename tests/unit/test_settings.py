"""Settings: each malformed setting gives one clear message naming it; secrets never show."""

from __future__ import annotations

import pytest

from shared.settings import InvoiceDateRule, Secret, SettingsError, load_settings

SECRET = "s3cr3t-Value~that-must-never-leak"
ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5"


def valid_env(**overrides: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};",
        "ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555",
        "ENTRA_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
        "ENTRA_CLIENT_SECRET": SECRET,
        "BOOKINGS_BUSINESS_IDS": "Lunch@contoso.com, Spa@contoso.com",
        "BC_COMPANY_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_defaults_follow_the_contract() -> None:
    settings = load_settings(valid_env())
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.bc_base_url == "https://api.businesscentral.dynamics.com/v2.0"
    assert settings.bc_environment == "Production"
    assert settings.time_zone_name == "UTC"
    assert settings.sync_schedule == "0 */15 * * * *"
    assert settings.sync_lookback_days == 30
    assert settings.sync_customers is True and settings.sync_services is True
    assert settings.customer_template is None and settings.item_template is None
    assert settings.invoice_date is InvoiceDateRule.APPOINTMENT
    assert settings.max_selection == 10000
    assert settings.bookings_business_ids == ("Lunch@contoso.com", "Spa@contoso.com")
    assert settings.authority == "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555"


def test_values_are_parsed_and_settings_are_immutable() -> None:
    settings = load_settings(
        valid_env(
            BOOKINGS_TIME_ZONE="Europe/Amsterdam",
            SYNC_CUSTOMERS="False",
            SYNC_SERVICES="0",
            INVOICE_DATE="Today",
            MAX_SELECTION="250",
            SYNC_LOOKBACK_DAYS="7",
            GRAPH_BASE_URL="https://graph.microsoft.us/v1.0/",
            CUSTOMER_TEMPLATE="C-TEMPLATE",
        )
    )
    assert settings.time_zone_name == "Europe/Amsterdam"
    assert settings.sync_customers is False and settings.sync_services is False
    assert settings.invoice_date is InvoiceDateRule.TODAY
    assert settings.max_selection == 250 and settings.sync_lookback_days == 7
    assert settings.graph_base_url == "https://graph.microsoft.us/v1.0"
    assert settings.customer_template == "C-TEMPLATE"
    with pytest.raises(AttributeError):
        settings.max_selection = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "setting", "fragment"),
    [
        ({"ENTRA_TENANT_ID": None}, "ENTRA_TENANT_ID", "is missing"),
        ({"BC_COMPANY_ID": ""}, "BC_COMPANY_ID", "is missing"),
        ({"BOOKINGS_BUSINESS_IDS": " , "}, "BOOKINGS_BUSINESS_IDS", "is missing"),
        ({"AzureWebJobsStorage": None}, "AzureWebJobsStorage", "is missing"),
        ({"ENTRA_CLIENT_SECRET": None}, "ENTRA_CLIENT_SECRET", "ENTRA_CLIENT_CERTIFICATE_PATH"),
        ({"GRAPH_BASE_URL": "http://graph.example.com/v1.0"}, "GRAPH_BASE_URL", "must use https"),
        ({"BC_BASE_URL": "ftp://bc.example.com"}, "BC_BASE_URL", "not an absolute URL"),
        ({"ENTRA_AUTHORITY_HOST": "login.microsoftonline.com"}, "ENTRA_AUTHORITY_HOST", "absolute URL"),
        ({"BOOKINGS_TIME_ZONE": "Europe/Atlantis"}, "BOOKINGS_TIME_ZONE", "IANA time zone"),
        ({"BOOKINGS_TIME_ZONE": "../../etc/passwd"}, "BOOKINGS_TIME_ZONE", "IANA time zone"),
        ({"BC_COMPANY_ID": "not-a-guid"}, "BC_COMPANY_ID", "is not a GUID"),
        ({"ENTRA_CLIENT_ID": "12345"}, "ENTRA_CLIENT_ID", "is not a GUID"),
        ({"SYNC_SCHEDULE": "*/15 * * * *"}, "SYNC_SCHEDULE", "expected 6 fields"),
        ({"SYNC_SCHEDULE": "0 61 * * * *"}, "SYNC_SCHEDULE", "NCRONTAB"),
        ({"SYNC_CUSTOMERS": "maybe"}, "SYNC_CUSTOMERS", "not a boolean"),
        ({"SYNC_SERVICES": "yes please"}, "SYNC_SERVICES", "not a boolean"),
        ({"MAX_SELECTION": "ten"}, "MAX_SELECTION", "whole number"),
        ({"MAX_SELECTION": "0"}, "MAX_SELECTION", "between 1 and"),
        ({"SYNC_LOOKBACK_DAYS": "-3"}, "SYNC_LOOKBACK_DAYS", "between 1 and"),
        ({"INVOICE_DATE": "posting"}, "INVOICE_DATE", "appointment, today"),
        ({"BOOKINGS_BUSINESS_IDS": "lunch@contoso.com,not-an-address"}, "BOOKINGS_BUSINESS_IDS", "SMTP"),
        # PartitionKey may not hold / \\ # ? (Learn, "Understanding the Table service data model").
        ({"BOOKINGS_BUSINESS_IDS": "lunch/desk@contoso.com"}, "BOOKINGS_BUSINESS_IDS", "PartitionKey"),
        ({"BOOKINGS_BUSINESS_IDS": "lunch\\desk@contoso.com"}, "BOOKINGS_BUSINESS_IDS", "PartitionKey"),
        ({"BOOKINGS_BUSINESS_IDS": "lunch#1@contoso.com"}, "BOOKINGS_BUSINESS_IDS", "PartitionKey"),
        ({"BOOKINGS_BUSINESS_IDS": "lunch?@contoso.com"}, "BOOKINGS_BUSINESS_IDS", "PartitionKey"),
        ({"CUSTOMER_TEMPLATE": "x' or 1 eq 1 or 'a"}, "CUSTOMER_TEMPLATE", "Code[20]"),
    ],
)
def test_bad_setting_names_the_setting_and_the_problem(
    overrides: dict[str, str | None], setting: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(valid_env(**overrides))  # type: ignore[arg-type]
    message = str(caught.value)
    assert caught.value.setting == setting
    assert message.startswith(f"Setting {setting} ")
    assert fragment in message
    assert "\n" not in message
    assert SECRET not in message and ACCOUNT_KEY not in message


def test_loopback_http_is_allowed_for_tests() -> None:
    settings = load_settings(valid_env(GRAPH_BASE_URL="http://127.0.0.1:8443/graph/v1.0"))
    assert settings.graph_base_url == "http://127.0.0.1:8443/graph/v1.0"


def test_certificate_path_must_exist(tmp_path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(SettingsError) as caught:
        load_settings(valid_env(ENTRA_CLIENT_SECRET=None, ENTRA_CLIENT_CERTIFICATE_PATH=str(missing)))
    assert caught.value.setting == "ENTRA_CLIENT_CERTIFICATE_PATH"
    pem = tmp_path / "cert.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n")
    settings = load_settings(valid_env(ENTRA_CLIENT_SECRET=None, ENTRA_CLIENT_CERTIFICATE_PATH=str(pem)))
    assert settings.client_secret is None and settings.client_certificate_path == str(pem)


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = load_settings(valid_env())
    for text in (repr(settings), str(settings), repr(settings.client_secret), f"{settings.client_secret}"):
        assert SECRET not in text
        assert ACCOUNT_KEY not in text
    assert isinstance(settings.client_secret, Secret)
    assert settings.client_secret.reveal() == SECRET
    assert settings.storage.connection_string.reveal().endswith(f"AccountKey={ACCOUNT_KEY};")


def test_identity_based_storage_connection() -> None:
    settings = load_settings(
        valid_env(
            AzureWebJobsStorage=None,
            AzureWebJobsStorage__accountName="stbookings",
            AzureWebJobsStorage__clientId="12121212-3434-5656-7878-909090909090",
        )
    )
    assert settings.storage.uses_identity
    assert settings.storage.table_service_uri == "https://stbookings.table.core.windows.net"
    assert settings.storage.queue_service_uri == "https://stbookings.queue.core.windows.net"
    assert settings.storage.managed_identity_client_id == "12121212-3434-5656-7878-909090909090"


def test_business_central_budget_settings_default_to_its_limits_and_name_them_when_wrong() -> None:
    settings = load_settings(valid_env())
    assert (
        settings.bc_max_concurrency,
        settings.bc_max_requests_per_5_min,
        settings.bc_rate_window_seconds,
    ) == (
        5,
        5400,
        300,
    )
    tuned = load_settings(valid_env(BC_MAX_CONCURRENCY="3", BC_MAX_REQUESTS_PER_5_MIN="6000"))
    assert (tuned.bc_max_concurrency, tuned.bc_max_requests_per_5_min) == (3, 6000)
    for name, value, problem in (
        (
            "BC_MAX_CONCURRENCY",
            "6",
            "must be between 1 and 5 (Business Central runs 5 per app registration), got 6",
        ),
        ("BC_MAX_CONCURRENCY", "0", "must be between 1 and 5"),
        ("BC_MAX_CONCURRENCY", "five", "is not a whole number"),
        ("BC_MAX_REQUESTS_PER_5_MIN", "6001", "must be between 1 and 6000 (Business Central allows 6,000"),
        ("BC_RATE_WINDOW_SECONDS", "301", "must be between 1 and 300"),
    ):
        with pytest.raises(SettingsError) as raised:
            load_settings(valid_env(**{name: value}))
        assert raised.value.setting == name and problem in str(raised.value)


MANAGED_IDENTITY = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
MI_SETTING = "ENTRA_MANAGED_IDENTITY_CLIENT_ID"
CERT_SETTING = "ENTRA_CLIENT_CERTIFICATE_PATH"


def test_managed_identity_alone_is_a_credential() -> None:
    settings = load_settings(
        valid_env(
            ENTRA_CLIENT_SECRET=None, ENTRA_MANAGED_IDENTITY_CLIENT_ID=f"{{{MANAGED_IDENTITY.upper()}}}"
        )
    )
    assert settings.managed_identity_client_id == MANAGED_IDENTITY
    assert settings.client_secret is None and settings.client_certificate_path is None


@pytest.mark.parametrize(
    ("overrides", "setting", "fragment"),
    [
        ({MI_SETTING: MANAGED_IDENTITY}, MI_SETTING, "together with ENTRA_CLIENT_SECRET"),
        ({CERT_SETTING: "/x.pem"}, CERT_SETTING, "exactly one credential"),
        ({"ENTRA_CLIENT_SECRET": None, MI_SETTING: "my-identity"}, MI_SETTING, "is not a GUID"),
        ({"ENTRA_CLIENT_SECRET": " "}, "ENTRA_CLIENT_SECRET", MI_SETTING),
    ],
)  # fmt: skip
def test_exactly_one_credential_kind(overrides: dict[str, str | None], setting: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(valid_env(**overrides))  # type: ignore[arg-type]
    assert caught.value.setting == setting and fragment in str(caught.value)
    assert "\n" not in str(caught.value) and SECRET not in str(caught.value)
