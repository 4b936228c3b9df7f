"""`make check` (`python -m devhost.check`): the setup check from a terminal, before deploying.

Runs the same checks as `GET /api/setup-check` against the settings in `local.settings.json`
(variables already in the environment win), so an administrator can test a real tenant's app
registration, Bookings businesses and Business Central company before anything is deployed. Prints
each check with its fix, failed ones first; exits 1 when a check failed, 0 otherwise. Never prints
a secret.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devhost.config import HostConfigError, load_local_settings
from shared import bootstrap
from shared.domain.moments import utc_now
from shared.domain.setup_checks import FAILED, ordered
from shared.services.setup_check import SetupReport, settings_failure_report
from shared.settings import SettingsError

ROOT = Path(__file__).resolve().parent.parent
MARKS = {"ok": "ok     ", "warning": "WARNING", "failed": "FAILED ", "skipped": "skipped"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost.check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default="local.settings.json", help="settings file (default: local.settings.json)"
    )
    return parser.parse_args(argv)


def run_checks() -> SetupReport:
    try:
        settings = bootstrap.current_settings()
    except SettingsError as exc:
        return settings_failure_report(str(exc), utc_now())
    container = bootstrap.Container(settings)
    container.host_kind = "terminal"  # no function app here: App Service Authentication is skipped
    return container.setup_check.report()


def render(report: SetupReport) -> str:
    lines = [f"Setup check at {report.checked_at:%Y-%m-%d %H:%M:%S} UTC"]
    for check in ordered(report.checks):
        lines.append(f"  {MARKS.get(check.status, check.status)}  {check.name}: {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"           fix: {check.fix}")
    failed = sum(1 for check in report.checks if check.status == FAILED)
    lines.append(f"{failed} check(s) failed" if failed else "No check failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = Path(args.settings)
    path = path if path.is_absolute() else ROOT / path
    if path.exists():
        try:
            load_local_settings(path, os.environ)
        except HostConfigError as exc:
            print(f"make check: {exc}", file=sys.stderr)
            return 2
    else:
        print(f"make check: {path.name} not found; using the environment only", file=sys.stderr)
    report = run_checks()
    print(render(report))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
