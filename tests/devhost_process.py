"""`python -m devhost` as a real process, for tests that need signals, kills or a second host."""

from __future__ import annotations

import os
from collections.abc import Mapping

from devhost.processes import HostProcess, HostProcesses

__all__ = ["DevhostProcesses", "HostProcess"]


class DevhostProcesses(HostProcesses):
    """`HostProcesses` whose `env` goes over this process's environment (less `drop_env_prefixes`)."""

    def spawn(  # type: ignore[override]
        self, env: Mapping[str, str], *args: str, drop_env_prefixes: tuple[str, ...] = ()
    ) -> HostProcess:
        inherited = {
            k: v for k, v in os.environ.items() if not (drop_env_prefixes and k.startswith(drop_env_prefixes))
        }
        return super().spawn({**inherited, **env}, *args)
