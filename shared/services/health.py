"""The health use case: are the settings valid and is storage reachable?

Each check reports a short, secret-free detail, so an operator can act on a 503 without logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class HealthCheck:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[HealthCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]


def check_health(load_settings: Callable[[], S], probe_storage: Callable[[S], None]) -> HealthReport:
    """Run the checks in order; storage is only probed when the settings are usable."""
    try:
        settings = load_settings()
    except ValueError as exc:  # a settings problem (SettingsError) names the setting, never a secret
        return HealthReport(
            (
                HealthCheck("settings", False, str(exc)),
                HealthCheck("storage", False, "not checked: settings are invalid"),
            )
        )
    checks = [HealthCheck("settings", True, "valid")]
    try:
        probe_storage(settings)
        checks.append(HealthCheck("storage", True, "reachable"))
    except Exception as exc:  # any failure to reach storage is what this check reports
        checks.append(HealthCheck("storage", False, f"unreachable: {type(exc).__name__}"))
    return HealthReport(tuple(checks))
