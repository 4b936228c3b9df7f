"""`make check` (`python -m devhost.check`): the setup check from a terminal against a settings
file, before anything is deployed. Runs as a separate process, as an administrator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _APP_SETTING_NAMES, PRODUCT_ROOT
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


def make_check(settings: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": settings}), encoding="utf-8")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _APP_SETTING_NAMES and not name.startswith("AzureWebJobsStorage")
    }
    return subprocess.run(
        [sys.executable, "-m", "devhost.check", "--settings", str(path)],
        cwd=PRODUCT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_healthy_tenant_passes_and_the_secret_is_never_printed(stack: Stack, tmp_path: Path) -> None:
    done = make_check(stack.settings, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No check failed" in done.stdout
    assert "ok       bc-company" in done.stdout
    assert "skipped  app-authentication" in done.stdout
    assert stack.settings["ENTRA_CLIENT_SECRET"] not in done.stdout + done.stderr


def test_a_broken_tenant_fails_with_the_fix(stack: Stack, tmp_path: Path) -> None:
    stack.admin.break_app(stack.settings["ENTRA_CLIENT_ID"], businessCentralRegistered=False)
    done = make_check(stack.settings, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("  FAILED   bc-company")  # failed first
    assert "fix: In Business Central open the page 'Microsoft Entra Applications'" in lines[2]
    assert "1 check(s) failed" in done.stdout


def test_invalid_settings_name_the_setting(stack: Stack, tmp_path: Path) -> None:
    done = make_check({**stack.settings, "BC_COMPANY_ID": "not-a-guid"}, tmp_path)
    assert done.returncode == 1
    assert "FAILED   settings" in done.stdout and "BC_COMPANY_ID" in done.stdout
