"""Shared helpers of the sandbox tests: the fixed clock and a small HTTPS client."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from sandbox import SandboxHandle

FIXED_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"


class SandboxClient:
    """Talks real HTTPS to a sandbox, with tokens from its token endpoint."""

    def __init__(self, handle: SandboxHandle) -> None:
        self.handle = handle
        self.settings = handle.settings
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.session.close()

    @property
    def verify(self) -> str:
        return str(self.handle.ca_path)

    @property
    def token_endpoint(self) -> str:
        s = self.settings
        return f"{s['ENTRA_AUTHORITY_HOST']}/{s['ENTRA_TENANT_ID']}/oauth2/v2.0/token"

    def request_token(self, scope: str, **form: str) -> requests.Response:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.settings["ENTRA_CLIENT_ID"],
            "client_secret": self.settings["ENTRA_CLIENT_SECRET"],
            "scope": scope,
        }
        data.update(form)
        return self.session.post(self.token_endpoint, data=data, verify=self.verify, timeout=30)

    def token(self, scope: str) -> str:
        if scope not in self._tokens:
            response = self.request_token(scope)
            response.raise_for_status()
            self._tokens[scope] = response.json()["access_token"]
        return self._tokens[scope]

    def graph_url(self, path: str) -> str:
        return f"{self.settings['GRAPH_BASE_URL']}{path}"

    def graph(
        self, method: str, path_or_url: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        url = path_or_url if path_or_url.startswith("https://") else self.graph_url(path_or_url)
        headers = {"Authorization": f"Bearer {token or self.token(GRAPH_SCOPE)}", **kwargs.pop("headers", {})}
        return self.session.request(method, url, headers=headers, verify=self.verify, timeout=30, **kwargs)

    @property
    def company_url(self) -> str:
        s = self.settings
        return (
            f"{s['BC_BASE_URL']}/{s['ENTRA_TENANT_ID']}/{s['BC_ENVIRONMENT']}/api/v2.0/"
            f"companies({s['BC_COMPANY_ID']})"
        )

    def bc(self, method: str, path_or_url: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith("https://") else f"{self.company_url}{path_or_url}"
        headers = {"Authorization": f"Bearer {token or self.token(BC_SCOPE)}", **kwargs.pop("headers", {})}
        return self.session.request(method, url, headers=headers, verify=self.verify, timeout=30, **kwargs)

    @property
    def business_ids(self) -> list[str]:
        return self.settings["BOOKINGS_BUSINESS_IDS"].split(",")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds (never wait unbounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.01)
