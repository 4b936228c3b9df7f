"""`python -m devhost` as a real process, for tests that need signals, kills or a second host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import wait_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class HostProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class DevhostProcesses:
    """Starts devhost processes on free ports and kills whatever is still running at the end."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[HostProcess] = []

    def spawn(
        self, env: Mapping[str, str], *args: str, drop_env_prefixes: tuple[str, ...] = ()
    ) -> HostProcess:
        """Start `python -m devhost --port 0 ...` with `env` over this process's environment."""
        n = len(self.started)
        log_path = self.work_dir / f"devhost-{n}.log"
        full_env = {
            k: v for k, v in os.environ.items() if not (drop_env_prefixes and k.startswith(drop_env_prefixes))
        }
        full_env.update(env)
        full_env["PYTHONPATH"] = str(PROJECT_ROOT)
        command = [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            "0",
            "--state-dir",
            str(self.work_dir / f"state-{n}"),
        ]
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [*command, *args],
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                env=full_env,
                cwd=PROJECT_ROOT,
            )
        assert process.stdout is not None
        line = wait_for(lambda: process.stdout.readline() or process.poll() is not None, timeout=60)
        if not isinstance(line, str) or not line.startswith("devhost ready "):
            process.kill()
            raise AssertionError(f"devhost did not start: {log_path.read_text()}")
        handle = HostProcess(process, line.split()[-1], log_path)
        self.started.append(handle)
        return handle

    def __enter__(self) -> DevhostProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()

    def kill_all(self) -> None:
        for handle in self.started:
            if handle.process.poll() is None:
                handle.process.send_signal(signal.SIGKILL)
                handle.process.wait(10)
