"""The secretless credential: real MSAL, devhost's managed identity endpoint, the sandbox's Entra ID.

With ENTRA_MANAGED_IDENTITY_CLIENT_ID alone, the token provider asks App Service's identity
endpoint (here devhost's, over the 2019-08-01 protocol) for the identity's token for
`api://AzureADTokenExchange` and sends it as client assertion; the sandbox's Entra ID accepts it
under the app registration's federated credential.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from devhost.identity import ManagedIdentityEndpoint, sandbox_token_source
from sandbox import SandboxHandle
from shared.adapters.managed_identity import ManagedIdentityAssertion
from shared.adapters.token_provider import TokenError, TokenProvider
from shared.settings import Settings, load_settings
from tests.conftest import product_settings

TOKEN_ROUTE = "POST /{tenant}/oauth2/v2.0/token"


@pytest.fixture
def endpoint(
    fresh_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ManagedIdentityEndpoint]:
    """devhost's identity endpoint, its variables in the environment as the platform sets them."""
    served = ManagedIdentityEndpoint(
        sandbox_token_source(fresh_sandbox.settings["DEVHOST_MANAGED_IDENTITY_SOURCE"])
    )
    served.start()
    for name, value in served.environment().items():
        monkeypatch.setenv(name, value)
    try:
        yield served
    finally:
        served.stop()


def secretless(sandbox: SandboxHandle, identity: str | None = None) -> Settings:
    values = {
        **sandbox.settings,
        "ENTRA_CLIENT_SECRET": "",
        "ENTRA_MANAGED_IDENTITY_CLIENT_ID": identity or sandbox.app.info()["managedIdentityClientId"],
    }
    return load_settings(product_settings("UseDevelopmentStorage=true", **values))


def test_tokens_for_graph_and_business_central_without_a_secret(
    fresh_sandbox: SandboxHandle, endpoint: ManagedIdentityEndpoint
) -> None:
    provider = TokenProvider(secretless(fresh_sandbox))
    graph, bc = provider.graph_token(), provider.business_central_token()
    assert provider.graph_token() == graph  # MSAL's cache
    routes = fresh_sandbox.admin.counters()["services"]["entra"]["routes"]
    assert routes[TOKEN_ROUTE] == 2

    base = fresh_sandbox.settings["GRAPH_BASE_URL"]
    url = f"{base}/solutions/bookingBusinesses/{fresh_sandbox.identity.business_ids[0]}"
    assert requests.get(url, headers={"Authorization": f"Bearer {graph}"}, timeout=30).ok
    assert bc != graph


def test_an_untrusted_identity_is_a_permanent_error_naming_the_subject(
    fresh_sandbox: SandboxHandle, endpoint: ManagedIdentityEndpoint
) -> None:
    stranger = fresh_sandbox.admin.create_managed_identity("not trusted")
    with pytest.raises(TokenError) as caught:
        TokenProvider(secretless(fresh_sandbox, stranger["clientId"])).graph_token()
    assert caught.value.error == "invalid_request" and not caught.value.transient
    assert "AADSTS700213" in str(caught.value) and stranger["principalId"] in str(caught.value)


def test_outside_azure_the_error_says_which_credential_to_use_instead(
    fresh_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    monkeypatch.delenv("IDENTITY_HEADER", raising=False)
    with pytest.raises(TokenError) as caught:
        TokenProvider(secretless(fresh_sandbox)).graph_token()
    assert caught.value.error == "managed_identity_unavailable" and not caught.value.transient
    assert "ENTRA_CLIENT_SECRET or ENTRA_CLIENT_CERTIFICATE_PATH" in str(caught.value)


def test_an_unknown_identity_is_named_by_the_endpoint(
    fresh_sandbox: SandboxHandle, endpoint: ManagedIdentityEndpoint
) -> None:
    unknown = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    with pytest.raises(TokenError) as caught:
        TokenProvider(secretless(fresh_sandbox, unknown)).graph_token()
    assert caught.value.error == "managed_identity_unavailable" and not caught.value.transient
    assert "400" in str(caught.value) and unknown in str(caught.value)


def test_the_assertion_is_reused_until_five_minutes_before_it_expires(
    fresh_sandbox: SandboxHandle, endpoint: ManagedIdentityEndpoint
) -> None:
    now = [fresh_sandbox.clock.now().timestamp()]
    calls: list[str] = []
    session = requests.Session()
    original = session.get

    def counting_get(*args: object, **kwargs: object) -> requests.Response:
        calls.append("get")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    session.get = counting_get  # type: ignore[method-assign]
    assertion = ManagedIdentityAssertion(
        fresh_sandbox.app.info()["managedIdentityClientId"], http_client=session, clock=lambda: now[0]
    )
    first = assertion()
    assert assertion() == first and len(calls) == 1
    now[0] += 24 * 3600 - 299  # inside the last five minutes of its 24 hours
    assert assertion() != first and len(calls) == 2
