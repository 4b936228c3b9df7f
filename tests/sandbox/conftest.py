"""Fixtures for the sandbox's contract tests.

One sandbox server per test session (starting one costs two RSA key generations); the
function-scoped `sandbox` fixture hands each test the same server with its data reseeded, fault
switches and counters reset, page sizes back to defaults and the clock back at `FIXED_NOW`, so
tests never depend on each other or on today's date.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import ManualClock, SandboxHandle, start_sandbox
from tests.sandbox.support import FIXED_NOW, SandboxClient


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """The session's sandbox, on a free port, with a manual clock."""
    handle = start_sandbox(
        port=0,
        state_dir=tmp_path_factory.mktemp("sandbox-state"),
        seed=7,
        clock=ManualClock(FIXED_NOW),
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> SandboxHandle:
    """A clean sandbox for one test; `requests` and MSAL trust its CA through the environment."""
    sandbox_server.reset_to(FIXED_NOW)
    bundle = str(sandbox_server.ca_bundle_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("SSL_CERT_FILE", bundle)
    return sandbox_server


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[SandboxClient]:
    api = SandboxClient(sandbox)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., SandboxHandle]]:
    """Start extra sandboxes with their own options; all are stopped after the test."""
    started: list[SandboxHandle] = []

    def start(**kwargs: Any) -> SandboxHandle:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("state_dir", tmp_path / f"sandbox-{len(started)}")
        kwargs.setdefault("clock", ManualClock(FIXED_NOW))
        handle = start_sandbox(**kwargs)
        started.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            handle.stop()
