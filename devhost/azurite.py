"""Start and stop a throw-away Azurite (tables, queues, blobs) on free ports.

Used by `make test` (wrapping pytest), by `make run` and by the test fixtures when no storage is
given. Azurite runs in memory, so every start is a clean account; given a `location`, it keeps its
data in that directory instead (a benchmark reopens a table it filled there).

    python -m devhost.azurite -- <command...>

starts Azurite, runs the command with `AzureWebJobsStorage` / `AZURITE_CONNECTION_STRING` pointing
at it, stops Azurite by its pid (also when the command fails) and exits with the command's status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"

# The well-known development account of the storage emulator (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def dev_connection_string(host: str, blob_port: int, queue_port: int, table_port: int) -> str:
    """Connection string of the emulator's development account on the given ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{DEV_ACCOUNT};"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Azurite:
    """A running Azurite process and how to reach it."""

    process: subprocess.Popen[bytes]
    host: str
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return dev_connection_string(self.host, self.blob_port, self.queue_port, self.table_port)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process by pid; escalate to SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_azurite(
    host: str = "127.0.0.1", timeout: float = 60.0, attempts: int = 3, location: Path | None = None
) -> Azurite:
    """Start Azurite in memory on three free ports and wait until all three accept connections.

    With `location`, Azurite persists to that directory instead of memory: what it holds there is
    loaded at start and saved when it is stopped (SIGTERM).

    A port picked free can be taken by someone else before Azurite binds it; then we try again
    with new ports rather than fail.
    """
    if not AZURITE_BIN.exists():
        raise RuntimeError(
            f"Azurite is not installed ({AZURITE_BIN} missing): run 'npm ci' or 'make install'."
        )
    last_error = ""
    for _ in range(attempts):
        ports = [free_port(host) for _ in range(3)]
        if len(set(ports)) != 3:
            continue
        blob, queue, table = ports
        cmd = [
            str(AZURITE_BIN),
            *(["--inMemoryPersistence"] if location is None else ["--location", str(location)]),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
            "--blobHost", host, "--blobPort", str(blob),
            "--queueHost", host, "--queuePort", str(queue),
            "--tableHost", host, "--tablePort", str(table),
        ]  # fmt: skip
        process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        azurite = Azurite(process, host, blob, queue, table)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = (process.stderr.read() if process.stderr else b"").decode(errors="replace")
                break
            if all(_port_open(host, p) for p in ports):
                return azurite
            time.sleep(0.05)
        else:
            azurite.stop()
            last_error = f"Azurite did not listen on {ports} within {timeout:.0f}s"
    raise RuntimeError(f"could not start Azurite: {last_error.strip()[-500:]}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        print("usage: python -m devhost.azurite -- <command...>", file=sys.stderr)
        return 2
    azurite = start_azurite()
    print(
        f"Azurite running (pid {azurite.process.pid}) on {azurite.host}: blob {azurite.blob_port}, "
        f"queue {azurite.queue_port}, table {azurite.table_port}",
        flush=True,
    )
    env = dict(os.environ)
    env["AZURITE_CONNECTION_STRING"] = azurite.connection_string
    env["AzureWebJobsStorage"] = azurite.connection_string
    child: subprocess.Popen[bytes] | None = None
    try:
        child = subprocess.Popen(args, env=env)
        return child.wait()
    except KeyboardInterrupt:
        if child is not None:
            child.send_signal(signal.SIGINT)
            return child.wait()
        return 130
    finally:
        azurite.stop()
        print(f"Azurite stopped (pid {azurite.process.pid})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
