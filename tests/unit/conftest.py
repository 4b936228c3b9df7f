"""Unit fixtures: `app`, the composition root wired on the fakes (`tests/unit/wiring.py`)."""

from __future__ import annotations

import pytest

from tests.unit.wiring import FakeApp, fake_app


@pytest.fixture
def app() -> FakeApp:
    return fake_app()
