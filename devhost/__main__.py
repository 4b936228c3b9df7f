"""`python -m devhost [--port 7071] [--settings local.settings.json]`: run the app locally."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from devhost.config import HostConfig, HostConfigError, load_local_settings
from devhost.functions import load_app
from devhost.host import DevHost
from devhost.logs import configure_console_logging

log = logging.getLogger("devhost")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description="Local Azure Functions host")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071; 0 picks a free one)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--settings", default="local.settings.json", help="local settings file (Values)")
    parser.add_argument("--app", default="function_app", help="module holding the FunctionApp")
    parser.add_argument("--app-dir", default=".", help="directory of the app (host.json, the module)")
    parser.add_argument("--state-dir", default=".devhost", help="where timer schedule status is kept")
    parser.add_argument(
        "--queue-lock-seconds", type=float, default=600, help="how long a fetched message stays locked"
    )
    parser.add_argument("--drain-seconds", type=float, default=60, help="how long shutdown waits for work")
    parser.add_argument("--verbose", action="store_true", help="debug logging (tracebacks of failures)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_console_logging(logging.DEBUG if args.verbose else logging.INFO)
    app_dir = Path(args.app_dir).resolve()
    settings_path = Path(args.settings)
    if not settings_path.is_absolute():
        settings_path = app_dir / settings_path
    try:
        taken = load_local_settings(settings_path)
        if taken:
            log.info(
                "Loaded %d setting(s) from %s (environment variables win)", len(taken), settings_path.name
            )
        config = HostConfig.load(app_dir / "host.json")
        sys.path.insert(0, str(app_dir))
        app = load_app(args.app)
        host = DevHost(
            app,
            config=config,
            settings=os.environ,
            app_directory=app_dir,
            state_directory=Path(args.state_dir).resolve(),
            bind=args.bind,
            port=args.port,
            queue_lock=timedelta(seconds=args.queue_lock_seconds),
            drain_timeout=args.drain_seconds,
        )
    except HostConfigError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error("Port %d is already in use: stop what uses it or choose another with --port", args.port)
            return 2
        raise
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("Received %s", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    host.start()
    print(f"devhost ready {host.url}", flush=True)
    while not stop_requested.wait(0.5):
        pass
    if host.stop():
        return 0
    # Invocations still running hold pool threads that the interpreter would wait for at exit;
    # leave now, as a host that is shut down does: their messages reappear after the lock.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
