"""`make run`: start Azurite and the local host for this app, and stop both on Ctrl-C.

Later steps (sandbox, first sync, next-step hints) are added here as the product grows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from devhost.azurite import start_azurite


def main() -> int:
    azurite = start_azurite()
    print(f"Azurite running (pid {azurite.process.pid}), tables on port {azurite.table_port}", flush=True)
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string}
    port = os.environ.get("DEVHOST_PORT", "7071")
    host = subprocess.Popen([sys.executable, "-m", "devhost", "--port", port], env=env)
    try:
        return host.wait()
    except KeyboardInterrupt:
        host.send_signal(signal.SIGINT)
        return host.wait()
    finally:
        azurite.stop()
        print("Stopped Azurite and devhost.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
