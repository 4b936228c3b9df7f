"""End-to-end fixtures: a `stack` (sandbox + devhost + Azurite) per test.

Use `stack` for the defaults, or `make_stack(**setting_overrides)` for a product configured
differently (another schedule, a wrong secret, other businesses). Each stack starts from the
session's sandbox (`shared_sandbox`) reseeded, an empty storage account and the clock at
`E2E_NOW`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devhost.host import DevHost
from sandbox import SandboxHandle
from tests.e2e.stack import Stack, make_stack_factory


@pytest.fixture
def make_stack(
    shared_sandbox: SandboxHandle,
    storage_connection_string: str,
    start_product_host: Callable[..., DevHost],
) -> Iterator[Callable[..., Stack]]:
    make, cleanup = make_stack_factory(shared_sandbox, storage_connection_string, start_product_host)
    try:
        yield make
    finally:
        cleanup()


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()
