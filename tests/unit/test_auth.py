"""The caller in `X-MS-CLIENT-PRINCIPAL`, app role checks and failing closed (pure, no I/O)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devhost.auth import Identity, identity_from_token, mock_identity
from shared.api.auth import (
    ROLE_INVOICE,
    ROLE_READ,
    Caller,
    Refusal,
    authorize,
    caller_from_headers,
    decode_client_principal,
    identify,
    me_document,
    parse_client_principal,
    platform_problem,
)
from shared.domain.models import Actor

OID = "7d0c7c84-8d54-4d8e-9b0a-2b9a1c3c1f11"


def encode(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def principal(claims: list[tuple[str, str]], **fields: str) -> str:
    document = {
        "auth_typ": "aad",
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        "claims": [{"typ": typ, "val": val} for typ, val in claims],
        **fields,
    }
    return encode(document)


def test_a_user_signed_in_through_app_service() -> None:
    """Mapped claim types, as the platform passes a browser session's id token."""
    header = principal(
        [
            ("http://schemas.microsoft.com/identity/claims/objectidentifier", OID),
            ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "ana@contoso.com"),
            ("name", "Ana Silva"),
            ("http://schemas.microsoft.com/ws/2008/06/identity/claims/role", ROLE_READ),
            ("http://schemas.microsoft.com/ws/2008/06/identity/claims/role", ROLE_INVOICE),
        ]
    )
    caller = parse_client_principal(header)
    assert caller == Caller(OID, "ana@contoso.com", frozenset({ROLE_READ, ROLE_INVOICE}), "aad")
    assert caller.actor == Actor(OID, "ana@contoso.com")


def test_token_claim_names_and_a_daemon_without_a_name() -> None:
    """Raw claim names (`oid`, `roles`) and a client-credentials caller, named by its app id."""
    header = principal(
        [("oid", OID), ("appid", "c0ffee00-0000-0000-0000-000000000001"), ("roles", ROLE_INVOICE)],
        role_typ="roles",
        name_typ="name",
    )
    caller = parse_client_principal(header)
    assert caller is not None
    assert caller.name == "application c0ffee00-0000-0000-0000-000000000001"
    assert caller.roles == frozenset({ROLE_INVOICE}) and not caller.has_role(ROLE_READ)


def test_app_roles_arrive_as_roles_claims_whatever_role_typ_names() -> None:
    """App Service names the ws/2008 role URI as `role_typ` but passes app roles as `roles` claims,
    unmapped (Azure/azure-functions-host#3898; AzureAD/microsoft-identity-web#1983, #2166)."""
    header = principal([("oid", OID), ("roles", ROLE_READ), ("roles", ROLE_INVOICE)])
    caller = parse_client_principal(header)
    assert caller is not None and caller.roles == frozenset({ROLE_READ, ROLE_INVOICE})


def test_a_principal_without_roles_has_none() -> None:
    caller = parse_client_principal(principal([("oid", OID), ("name", "Bo")]))
    assert caller is not None and caller.roles == frozenset() and caller.name == "Bo"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "not base64 at all!",
        base64.b64encode(b"\xff\xfe not utf-8").decode(),
        encode("a string"),
        encode({"claims": "not a list"}),
        principal([("name", "No Object Id"), ("roles", ROLE_INVOICE)]),  # nobody the audit could name
        "A" * 70000,
    ],
    ids=["none", "empty", "blank", "not-base64", "not-utf8", "not-object", "bad-claims", "no-id", "huge"],
)
def test_malformed_or_anonymous_principals_are_no_caller(header: str | None) -> None:
    assert parse_client_principal(header) is None


def test_headers_are_found_in_any_case_and_url_safe_base64_is_accepted() -> None:
    header = (
        principal([("oid", OID), ("roles", ROLE_READ)], role_typ="roles").replace("+", "-").replace("/", "_")
    )
    assert caller_from_headers({"X-Ms-Client-Principal": header}) is not None
    assert caller_from_headers({"x-ms-client-principal-name": "Mallory"}) is None


def test_long_values_are_cut() -> None:
    caller = parse_client_principal(principal([("oid", OID), ("name", "x" * 5000)]))
    assert caller is not None and len(caller.name) == 256


def test_what_devhost_passes_on_is_what_the_app_reads() -> None:
    """devhost's principal headers (token and mock session) round-trip through the app's parser."""
    token = {"oid": OID, "appid": "app-1", "roles": [ROLE_READ], "aud": "api://x", "ver": "1.0"}
    for identity in (identity_from_token(token), mock_identity("ana@contoso.com", OID, [ROLE_INVOICE])):
        headers = identity.principal_headers()
        caller = caller_from_headers(headers)
        assert caller is not None
        assert (caller.id, caller.name, caller.roles) == (
            identity.user_id,
            identity.name,
            frozenset(identity.roles),
        )
        assert headers["X-MS-CLIENT-PRINCIPAL-ID"] == OID


IN_AZURE = {"WEBSITE_SITE_NAME": "bookinv-func", "WEBSITE_INSTANCE_ID": "abc"}
# What the Functions host looks at on Flex Consumption (azure-functions-host EnvironmentExtensions:
# IsFlexConsumptionSku, IsLinuxConsumptionOnLegion); no WEBSITE_INSTANCE_ID there (IsAppService).
FLEX = {"WEBSITE_SKU": "FlexConsumption"}
FLEX_PLACEHOLDER = {"CONTAINER_NAME": "c-1", "LEGION_SERVICE_HOST": "10.0.0.1"}


@pytest.mark.parametrize(
    ("environ", "closed"),
    [
        ({}, False),  # devhost / tests: devhost plays the platform
        ({"CONTAINER_NAME": "dev"}, False),  # any container (a CI runner): not Azure by itself
        (IN_AZURE, True),
        ({**IN_AZURE, "WEBSITE_AUTH_ENABLED": "False"}, True),
        ({**IN_AZURE, "WEBSITE_AUTH_ENABLED": "True"}, False),
        ({**IN_AZURE, "WEBSITE_AUTH_ENABLED": "true"}, False),
        ({"WEBSITE_INSTANCE_ID": "abc"}, True),
        # Flex Consumption: the host runs the platform's authentication itself exactly when it
        # reads WEBSITE_AUTH_ENABLED as true (HostEasyAuthOptionsSetup: bool, else non-zero int).
        (FLEX, True),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": "False"}, True),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": "0"}, True),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": "yes"}, True),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": "True"}, False),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": " TRUE "}, False),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": "1"}, False),
        ({**FLEX, "WEBSITE_AUTH_ENABLED": "2"}, False),
        (FLEX_PLACEHOLDER, True),
        ({**FLEX_PLACEHOLDER, "WEBSITE_AUTH_ENABLED": "True"}, False),
        ({"WEBSITE_POD_NAME": "p-1", "LEGION_SERVICE_HOST": "10.0.0.1"}, True),
    ],
)
def test_azure_without_app_service_authentication_fails_closed(environ: dict[str, str], closed: bool) -> None:
    assert (platform_problem(environ) is not None) is closed


def test_authorize_answers_401_403_503_or_the_caller() -> None:
    reader = {"X-MS-CLIENT-PRINCIPAL": principal([("oid", OID), ("roles", ROLE_READ)], role_typ="roles")}
    decision = authorize(reader, ROLE_READ, {})
    assert isinstance(decision, Caller) and decision.id == OID
    refused = authorize(reader, ROLE_INVOICE, {})
    assert isinstance(refused, Refusal) and refused.status == 403 and ROLE_INVOICE in refused.detail
    anonymous = authorize({}, ROLE_READ, {})
    assert isinstance(anonymous, Refusal) and anonymous.status == 401
    closed = authorize(reader, ROLE_READ, IN_AZURE)
    assert (
        isinstance(closed, Refusal) and closed.status == 503 and "App Service Authentication" in closed.detail
    )


def test_identify_needs_a_caller_but_no_role_and_me_shows_it() -> None:
    nobody = {"X-MS-CLIENT-PRINCIPAL": principal([("oid", OID), ("name", "Bo")])}
    caller = identify(nobody, {})
    assert isinstance(caller, Caller)
    assert me_document(caller) == {"name": "Bo", "id": OID, "roles": [], "identityProvider": "aad"}
    both = identify(
        {"X-MS-CLIENT-PRINCIPAL": principal([("oid", OID), ("roles", ROLE_READ), ("roles", ROLE_INVOICE)])},
        {},
    )
    assert isinstance(both, Caller) and me_document(both)["roles"] == [ROLE_INVOICE, ROLE_READ]
    anonymous = identify({}, {})
    assert isinstance(anonymous, Refusal) and anonymous.status == 401
    closed = identify(nobody, FLEX)
    assert isinstance(closed, Refusal) and closed.status == 503


@pytest.mark.parametrize(
    "identity",
    [
        identity_from_token({"oid": OID, "name": "Ana", "roles": [ROLE_READ, ROLE_INVOICE]}),
        mock_identity("ana@contoso.com", OID, [ROLE_READ, ROLE_INVOICE]),
    ],
    ids=["bearer-token", "browser-session"],
)
def test_devhost_passes_app_roles_as_app_service_does(identity: Identity) -> None:
    """App roles as claims of type `roles`, `role_typ` `roles` (not the Static Web Apps shape,
    not the ws/2008 role URI): an app that stopped reading `roles` would find no roles."""
    document = decode_client_principal(identity.principal_headers()["X-MS-CLIENT-PRINCIPAL"])
    assert document["auth_typ"] == "aad" and document["role_typ"] == "roles"
    assert document["name_typ"] == "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
    claims = document["claims"]
    assert isinstance(claims, list)
    roles = sorted(c["val"] for c in claims if c["typ"] == "roles")
    assert roles == [ROLE_INVOICE, ROLE_READ]
    assert not [c for c in claims if "role" in c["typ"] and c["typ"] != "roles"]
    assert "userRoles" not in document and "clientPrincipal" not in document
