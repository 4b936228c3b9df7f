"""`python -m devhost` as real processes: for tests that need signals, kills or a second host, and
for the benchmarks that run several instances against one budget.

Each process gets a free port (`--port 0`), its own state directory and log file; `spawn` waits,
bounded, for the `devhost ready <url>` line it prints on stdout once it listens.
"""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY = "devhost ready "


@dataclass
class HostProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class HostProcesses:
    """Starts devhost processes and ends exactly those, by pid (`stop` politely, `kill_all` not)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[HostProcess] = []

    def spawn(self, env: Mapping[str, str], *args: str, ready_timeout: float = 60.0) -> HostProcess:
        """Start `python -m devhost --port 0 --state-dir ... <args>` with exactly `env` (plus the
        project on `PYTHONPATH`); raises, with the log, if it is not ready within `ready_timeout`."""
        n = len(self.started)
        log_path = self.work_dir / f"devhost-{n}.log"
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
                env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
                cwd=PROJECT_ROOT,
            )
        line = _line_before(process, time.monotonic() + ready_timeout)
        if not line.startswith(READY):
            process.kill()
            process.wait(10)
            raise RuntimeError(f"devhost did not start (said {line!r}): {log_path.read_text()[-2000:]}")
        handle = HostProcess(process, line.split()[-1], log_path)
        self.started.append(handle)
        return handle

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to every process still running (devhost drains), SIGKILL to any that outlives it."""
        running = [h.process for h in self.started if h.process.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    def kill_all(self) -> None:
        for handle in self.started:
            if handle.process.poll() is None:
                handle.process.send_signal(signal.SIGKILL)
                handle.process.wait(10)

    def __enter__(self) -> HostProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()


def _line_before(process: subprocess.Popen[str], deadline: float) -> str:
    """The next line of the process's stdout, or "" if none comes before `deadline`."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            return ""
    return process.stdout.readline()
