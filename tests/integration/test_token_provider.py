"""Token provider: the real MSAL against the sandbox's Entra ID over TLS."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import msal
import pytest

from sandbox import SandboxHandle
from shared.adapters.token_provider import BUSINESS_CENTRAL_SCOPE, GRAPH_SCOPE, TokenError, TokenProvider
from shared.settings import Settings, load_settings
from tests.conftest import product_settings

TOKEN_ROUTE = "POST /{tenant}/oauth2/v2.0/token"
DISCOVERY_ROUTE = "GET /{tenant}/v2.0/.well-known/openid-configuration"


@pytest.fixture
def sandbox(fresh_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's sandbox, reseeded, its CA trusted through the environment."""
    return fresh_sandbox


def settings_for(sandbox: SandboxHandle, **overrides: str) -> Settings:
    values = {**sandbox.settings, **overrides}
    if "ENTRA_CLIENT_CERTIFICATE_PATH" in overrides:
        values["ENTRA_CLIENT_SECRET"] = ""  # the certificate alone
    return load_settings(product_settings("UseDevelopmentStorage=true", **values))


def entra_routes(sandbox: SandboxHandle) -> dict[str, int]:
    return dict(sandbox.admin.counters()["services"].get("entra", {}).get("routes", {}))


def test_one_token_per_resource_served_from_the_cache_afterwards(sandbox: SandboxHandle) -> None:
    provider = TokenProvider(settings_for(sandbox))

    graph, bc = provider.graph_token(), provider.business_central_token()
    again = [provider.graph_token(), provider.business_central_token(), provider.token(GRAPH_SCOPE)]

    assert graph != bc
    assert again == [graph, bc, graph]
    assert entra_routes(sandbox) == {DISCOVERY_ROUTE: 1, TOKEN_ROUTE: 2}  # one per resource, then cache


def test_the_tokens_are_accepted_by_their_resource(sandbox: SandboxHandle) -> None:
    import requests

    provider = TokenProvider(settings_for(sandbox))
    base = sandbox.settings["GRAPH_BASE_URL"]
    url = f"{base}/solutions/bookingBusinesses/{sandbox.identity.business_ids[0]}"
    assert requests.get(url, headers={"Authorization": f"Bearer {provider.graph_token()}"}, timeout=30).ok
    wrong = requests.get(
        url, headers={"Authorization": f"Bearer {provider.token(BUSINESS_CENTRAL_SCOPE)}"}, timeout=30
    )
    assert wrong.status_code == 401


def test_certificate_credential(sandbox: SandboxHandle) -> None:
    import jwt
    import requests

    sent: list[dict[str, Any]] = []

    class Recording(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            if isinstance(kwargs.get("data"), dict):
                sent.append(kwargs["data"])
            return super().request(method, url, *args, **kwargs)

    provider = TokenProvider(
        settings_for(sandbox, ENTRA_CLIENT_CERTIFICATE_PATH=str(sandbox.client_certificate.path)),
        http_client=Recording(),
    )
    assert provider.graph_token()
    assert entra_routes(sandbox)[TOKEN_ROUTE] == 1
    # MSAL (>= 1.35) computes the SHA-256 thumbprint itself when no SHA-1 `thumbprint` is given.
    [assertion] = [form["client_assertion"] for form in sent if "client_assertion" in form]
    header = jwt.get_unverified_header(assertion)
    assert "x5t#S256" in header and "x5t" not in header and header["alg"] == "PS256"


def test_wrong_secret_is_a_clear_permanent_error_without_the_secret(sandbox: SandboxHandle) -> None:
    secret = "Xy78Q~definitely-not-the-secret"
    provider = TokenProvider(settings_for(sandbox, ENTRA_CLIENT_SECRET=secret))
    with pytest.raises(TokenError) as caught:
        provider.graph_token()
    assert caught.value.error == "invalid_client" and not caught.value.transient
    assert "AADSTS7000215" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value.args)


def test_token_endpoint_outage_is_a_transient_token_error(sandbox: SandboxHandle) -> None:
    sandbox.admin.set_faults({"failures": {"entra": [{"status": 503, "count": 5, "route": TOKEN_ROUTE}]}})
    provider = TokenProvider(settings_for(sandbox))
    with pytest.raises(TokenError) as caught:
        provider.graph_token()
    assert caught.value.error == "service_unavailable" and caught.value.transient
    assert sandbox.settings["ENTRA_CLIENT_SECRET"] not in str(caught.value)


def test_discovery_outage_is_a_transient_token_error_and_is_retried_next_time(sandbox: SandboxHandle) -> None:
    sandbox.admin.set_faults({"failures": {"entra": [{"status": 503, "count": 1, "route": DISCOVERY_ROUTE}]}})
    provider = TokenProvider(settings_for(sandbox))
    with pytest.raises(TokenError) as caught:
        provider.graph_token()
    assert caught.value.error == "authority_unavailable" and caught.value.transient
    assert provider.graph_token()  # the app was not half-built: the next call starts over


def test_unreachable_authority(sandbox: SandboxHandle) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = TokenProvider(settings_for(sandbox, ENTRA_AUTHORITY_HOST=f"https://127.0.0.1:{port}"))
    with pytest.raises(TokenError) as caught:
        provider.graph_token()
    assert caught.value.error == "authority_unavailable" and caught.value.transient


def test_unreadable_certificate_names_the_setting_not_the_content(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n")
    provider = TokenProvider(settings_for(sandbox, ENTRA_CLIENT_CERTIFICATE_PATH=str(bogus)))
    with pytest.raises(TokenError) as caught:
        provider.graph_token()
    assert caught.value.error == "invalid_certificate" and not caught.value.transient
    assert "ENTRA_CLIENT_CERTIFICATE_PATH" in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "discovery"),
    [
        ("https://login.microsoftonline.com", True),
        ("https://login.microsoftonline.us", True),
        ("https://127.0.0.1:8443", False),
        ("https://entra.sandbox.example", False),
    ],
)
def test_instance_discovery_only_for_microsoft_authority_hosts(
    host: str, discovery: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, client_id: str, **kwargs: Any) -> None:
            seen.update(kwargs)

        def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
            return {"access_token": "t", "token_type": "Bearer", "expires_in": 3599}

    monkeypatch.setattr(msal, "ConfidentialClientApplication", Recorder)
    settings = load_settings(product_settings("UseDevelopmentStorage=true", ENTRA_AUTHORITY_HOST=host))
    assert TokenProvider(settings).graph_token() == "t"
    assert seen["instance_discovery"] is discovery
    assert seen["authority"] == f"{host}/{settings.tenant_id}"


@pytest.mark.parametrize(
    ("graph_base", "graph_scope", "bc_base", "bc_scope"),
    [
        (
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/.default",
            "https://api.businesscentral.dynamics.com/v2.0",
            "https://api.businesscentral.dynamics.com/.default",
        ),
        # Learn, "Microsoft Graph national cloud deployments": each cloud's root is its own resource.
        ("https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default", "", ""),
        ("https://dod-graph.microsoft.us/v1.0", "https://dod-graph.microsoft.us/.default", "", ""),
        (
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/.default",
            "https://api.businesscentral.dynamics.cn/v2.0",
            "https://api.businesscentral.dynamics.cn/.default",
        ),
        # A local stand-in or a proxy: the global resources.
        (
            "https://127.0.0.1:8443/graph/v1.0",
            "https://graph.microsoft.com/.default",
            "https://127.0.0.1:8443/bc/v2.0",
            "https://api.businesscentral.dynamics.com/.default",
        ),
    ],
)
def test_the_token_scope_follows_the_cloud_of_the_base_url(
    graph_base: str, graph_scope: str, bc_base: str, bc_scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str]] = []

    class Recorder:
        def __init__(self, client_id: str, **kwargs: Any) -> None:
            pass

        def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
            asked.append(scopes)
            return {"access_token": "t", "token_type": "Bearer", "expires_in": 3599}

    monkeypatch.setattr(msal, "ConfidentialClientApplication", Recorder)
    values = {"GRAPH_BASE_URL": graph_base, **({"BC_BASE_URL": bc_base} if bc_base else {})}
    provider = TokenProvider(load_settings(product_settings("UseDevelopmentStorage=true", **values)))
    provider.graph_token()
    provider.business_central_token()
    assert asked[0] == [graph_scope]
    assert asked[1] == [bc_scope or "https://api.businesscentral.dynamics.com/.default"]
