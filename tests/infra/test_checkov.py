"""checkov over infra/ (Bicep): zero failed checks, and every skip in the code says why.

checkov lives in its own venv (.venv-tools, built by `make install`/`make test`), because its pins
would downgrade the app's packages. Without it the test is skipped locally and fails in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.templates import INFRA, ROOT, all_templates

# Checks whose PASS proves checkov read the properties this deployment depends on.
MUST_PASS = {
    ("CKV_AZURE_3", "modules/storage.bicep"),  # HTTPS only
    ("CKV_AZURE_44", "modules/storage.bicep"),  # TLS 1.2
    ("CKV_AZURE_34", "modules/storage.bicep"),  # private blob container
    ("CKV_AZURE_70", "modules/functionapp.bicep"),  # HTTPS only
    ("CKV_AZURE_145", "modules/functionapp.bicep"),  # TLS 1.2
    ("CKV_AZURE_71", "modules/functionapp.bicep"),  # managed identity
}


def _checkov() -> str:
    candidates = [ROOT / ".venv-tools" / "bin" / "checkov", shutil.which("checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    message = "checkov is not installed: `make install` builds .venv-tools with requirements-tools.txt"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    completed = subprocess.run(
        [_checkov(), "--framework", "bicep", "--skip-download", "-d", str(INFRA), "-o", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # Exit code 1 means failed checks; anything else non-zero is checkov itself failing.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    reports = document if isinstance(document, list) else [document]
    (bicep,) = [r for r in reports if r.get("check_type") == "bicep"]
    return bicep


def _relative(check: dict[str, Any]) -> str:
    return check["file_path"].lstrip("/")


def test_checkov_finds_no_failed_checks_and_parses_every_file(report: dict[str, Any]) -> None:
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], _relative(c)) for c in report["results"]["failed_checks"]]
    assert failed == [], f"checkov failed checks: {failed}"
    assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert summary["passed"] >= len(MUST_PASS)


def test_checkov_evaluated_the_security_properties(report: dict[str, Any]) -> None:
    passed = {(c["check_id"], _relative(c)) for c in report["results"]["passed_checks"]}
    assert passed >= MUST_PASS, f"not passed: {MUST_PASS - passed}"


def test_ftp_check_is_skipped_because_flex_rejects_ftps_state(report: dict[str, Any]) -> None:
    # CKV_AZURE_78 wants siteConfig.ftpsState, which Flex Consumption stamps reject
    # (github.com/microsoft/azure-pipelines-tasks/issues/21032); FTP is closed by the 'ftp'
    # basicPublishingCredentialsPolicies resource instead, and the skip says so.
    (skip,) = [c for c in report["results"]["skipped_checks"] if c["check_id"] == "CKV_AZURE_78"]
    assert _relative(skip) == "modules/functionapp.bicep"
    reason = skip["check_result"]["suppress_comment"]
    assert "basicPublishingCredentialsPolicies" in reason and "Flex Consumption" in reason
    failed_or_passed = report["results"]["failed_checks"] + report["results"]["passed_checks"]
    assert not [c for c in failed_or_passed if c["check_id"] == "CKV_AZURE_78"]


def test_every_skipped_check_carries_a_reason(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= 20, (
            f"{check['check_id']} in {_relative(check)} is skipped without a reason"
        )
    # Every skip comment in the code is used: a stale one would hide a future failure unnoticed.
    declared = {
        (match.group(1), template.name)
        for template in all_templates()
        for match in re.finditer(r"checkov:skip=(CKV2?_AZURE_\d+):(.+)", template.text)
    }
    used = {(c["check_id"], _relative(c)) for c in skipped}
    assert declared == used, f"skip comments that match no check: {declared - used}"
