"""Fault fixtures: the whole product (sandbox + devhost + Azurite) with a fault-injecting proxy
(`devhost/fault_proxy.py`) between the app and Azurite.

The proxy runs in a process of its own (`StorageFaultsProcess`): inside this one it would wait for
the GIL, which the app, the sandbox and the test keep busy, on every request it forwards.

The app (its storage clients and devhost's queue listener) talks to Azurite only through the proxy;
the tests read and check storage directly, so a fault never blurs what a test sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from devhost.fault_proxy import FaultPlan, StorageFaultsProcess
from devhost.host import DevHost
from sandbox import SandboxHandle
from tests.e2e.stack import Stack, make_stack_factory


@dataclass
class FaultyStack:
    stack: Stack
    faults: StorageFaultsProcess


@pytest.fixture
def storage_faults(storage_connection_string: str) -> Iterator[StorageFaultsProcess]:
    """Proxies in front of Azurite's endpoints, passing everything until a test sets a plan."""
    with StorageFaultsProcess(storage_connection_string, FaultPlan()) as faults:
        yield faults


@pytest.fixture
def faulty_stack(
    shared_sandbox: SandboxHandle,
    storage_connection_string: str,
    start_product_host: Callable[..., DevHost],
    storage_faults: StorageFaultsProcess,
) -> Iterator[FaultyStack]:
    make, cleanup = make_stack_factory(shared_sandbox, storage_connection_string, start_product_host)
    try:
        yield FaultyStack(make(AzureWebJobsStorage=storage_faults.connection_string), storage_faults)
    finally:
        cleanup()
