"""`python -m sandbox`: run the local Entra ID / Graph Bookings / Business Central stand-ins.

Prints `sandbox ready <url>` once requests are accepted, writes the client's app settings to
`--settings-out`, and runs until SIGINT/SIGTERM. Every fault switch of the admin API has a flag.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sandbox.core.clock import Clock, ManualClock, SystemClock
from sandbox.core.fault_config import SERVICES, ConfigError, FaultConfig
from sandbox.core.paging import DEFAULT_BC_MAX_PAGE_SIZE, DEFAULT_GRAPH_PAGE_SIZE
from sandbox.core.timefmt import parse_iso_datetime
from sandbox.seed import (
    FLAT_CUSTOMER_FIELDS,
    GROUP_APPOINTMENTS,
    SEED_FEATURES,
    WINDOWS_TIME_ZONES,
    seed_features,
)
from sandbox.server import SandboxHandle, start_sandbox


def _service_value(text: str, flag: str) -> tuple[str, str]:
    service, sep, value = text.partition("=")
    if not sep or service not in SERVICES:
        raise argparse.ArgumentTypeError(
            f"{flag} expects SERVICE=VALUE with SERVICE one of {', '.join(SERVICES)}"
        )
    return service, value


def _latency(text: str) -> tuple[str, float]:
    service, value = _service_value(text, "--latency")
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--latency {text!r}: seconds must be a number") from None
    return service, seconds


def _failure(text: str) -> tuple[str, dict[str, Any]]:
    """`bc=429:3` (the next 3), `graph=503:0.25` (a quarter), optional `:RETRY_AFTER`."""
    service, value = _service_value(text, "--fail")
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--fail {text!r}: use SERVICE=STATUS:COUNT|FRACTION[:RETRY_AFTER]")
    try:
        rule: dict[str, Any] = {"status": int(parts[0])}
        if "." in parts[1]:
            rule["fraction"] = float(parts[1])
        else:
            rule["count"] = int(parts[1])
        if len(parts) == 3:
            rule["retryAfter"] = int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fail {text!r}: STATUS, COUNT and RETRY_AFTER are numbers"
        ) from None
    return service, rule


def _limit(value: int | None) -> int | None:
    """0 on the command line means "no limit"."""
    return None if value == 0 else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    _add_world_options(parser)
    _add_fault_options(parser.add_argument_group("fault switches (same as PATCH /_sandbox/faults)"))
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def _add_world_options(parser: argparse.ArgumentParser) -> None:
    """Where it listens, what it writes, and the world it serves."""
    parser.add_argument(
        "--port", type=int, default=8443, help="HTTPS port; 0 picks a free one (default 8443)"
    )
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "localhost"))
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".sandbox"), help="where CA files go (default .sandbox)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample data (default 1)")
    parser.add_argument("--settings-out", type=Path, help="write the client's app settings (JSON) here")
    parser.add_argument(
        "--now", help="freeze the sandbox clock at this ISO 8601 instant (adjustable via admin API)"
    )
    shapes = parser.add_argument_group("extra seed shapes (off by default; each adds its own appointments)")
    shapes.add_argument(
        "--seed-group-appointments",
        action="store_true",
        help="classes (maximumAttendeesCount > 1) with 2 to 8 attendees in customers",
    )
    shapes.add_argument(
        "--seed-windows-time-zones",
        action="store_true",
        help='start/end with a Windows zone name ("W. Europe Standard Time") and a local time',
    )
    shapes.add_argument(
        "--seed-flat-customer-fields",
        action="store_true",
        help="appointments with only customerName/customerEmailAddress/customerPhone",
    )
    shapes.add_argument(
        "--seed-features",
        default="",
        metavar="NAME[,NAME...]",
        help=f"the same by name: {', '.join(SEED_FEATURES)} or all",
    )
    parser.add_argument("--graph-page-size", type=int, default=DEFAULT_GRAPH_PAGE_SIZE)
    parser.add_argument(
        "--bc-page-size", type=int, default=DEFAULT_BC_MAX_PAGE_SIZE, help="BC maximum page size"
    )


def _add_fault_options(faults: argparse._ArgumentGroup) -> None:
    faults.add_argument("--latency", type=_latency, action="append", default=[], metavar="SERVICE=SECONDS")
    faults.add_argument(
        "--fail",
        type=_failure,
        action="append",
        default=[],
        metavar="SERVICE=STATUS:COUNT|FRACTION[:RETRY_AFTER]",
    )
    faults.add_argument(
        "--bc-max-running", type=int, help="concurrent BC requests per client (default 5; 0 = no cap)"
    )
    faults.add_argument(
        "--bc-max-connections", type=int, help="running + queued per client before 429 (default 100)"
    )
    faults.add_argument(
        "--bc-queue-timeout", type=float, help="seconds a request may wait in the queue (default 480)"
    )
    faults.add_argument("--bc-retry-after", type=int, help="Retry-After on BC's connection-cap 429")
    faults.add_argument(
        "--bc-rate-limit", type=int, help="BC requests per window per client (default 6000; 0 = off)"
    )
    faults.add_argument("--bc-rate-window", type=float, help="BC rate window in seconds (default 300)")
    faults.add_argument("--bc-rate-retry-after", type=int, help="Retry-After on BC's rate-limit 429")
    faults.add_argument(
        "--graph-mailbox-concurrency", type=int, help="Graph requests per mailbox (default 4; 0 = off)"
    )
    faults.add_argument("--graph-retry-after", type=int, help="Retry-After on Graph's 429 (default 1)")
    faults.add_argument(
        "--drop-after-commit", type=int, default=0, metavar="K", help="drop the next K invoice POSTs"
    )


# Limit flags per fault section: (JSON key, argument name, whether 0 on the command line means none).
_LIMIT_FLAGS: tuple[tuple[str, tuple[tuple[str, str, bool], ...]], ...] = (
    (
        "bcConcurrency",
        (
            ("maxRunning", "bc_max_running", True),
            ("maxConnections", "bc_max_connections", True),
            ("queueTimeoutSeconds", "bc_queue_timeout", False),
            ("retryAfter", "bc_retry_after", False),
        ),
    ),
    (
        "bcRateLimit",
        (
            ("limit", "bc_rate_limit", True),
            ("windowSeconds", "bc_rate_window", False),
            ("retryAfter", "bc_rate_retry_after", False),
        ),
    ),
    (
        "graphThrottling",
        (
            ("maxConcurrentPerMailbox", "graph_mailbox_concurrency", True),
            ("retryAfter", "graph_retry_after", False),
        ),
    ),
)


def fault_patch(args: argparse.Namespace) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if args.latency:
        patch["latency"] = dict(args.latency)
    if args.fail:
        failures: dict[str, list[dict[str, Any]]] = {}
        for service, rule in args.fail:
            failures.setdefault(service, []).append(rule)
        patch["failures"] = failures
    for section, flags in _LIMIT_FLAGS:
        values = {
            key: _limit(value) if zero_is_none else value
            for key, attribute, zero_is_none in flags
            if (value := getattr(args, attribute)) is not None
        }
        if values:
            patch[section] = values
    if args.drop_after_commit:
        patch["dropAfterCommit"] = args.drop_after_commit
    return patch


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s sandbox %(levelname)s %(message)s",
    )
    patch = fault_patch(args)
    try:
        FaultConfig().merged(patch)
    except ConfigError as exc:
        parser.error(str(exc))
    clock = _clock(parser, args)
    if args.graph_page_size < 1 or args.bc_page_size < 1:
        parser.error("page sizes must be >= 1")
    features = _features(parser, args)
    try:
        handle = start_sandbox(
            port=args.port,
            state_dir=args.state_dir,
            seed=args.seed,
            clock=clock,
            host=args.host,
            settings_out=args.settings_out,
            faults=patch,
            graph_page_size=args.graph_page_size,
            bc_max_page_size=args.bc_page_size,
            seed_features=features,
        )
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    _serve_until_stopped(handle)
    return 0


def _clock(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Clock:
    if not args.now:
        return SystemClock()
    try:
        return ManualClock(parse_iso_datetime(args.now))
    except ValueError as exc:
        parser.error(f"--now: {exc}")


def _features(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """`--seed-features` names and the `--seed-...` flags, validated."""
    features = [name for name in args.seed_features.split(",") if name.strip()]
    for flag, name in (
        (args.seed_group_appointments, GROUP_APPOINTMENTS),
        (args.seed_windows_time_zones, WINDOWS_TIME_ZONES),
        (args.seed_flat_customer_fields, FLAT_CUSTOMER_FIELDS),
    ):
        if flag:
            features.append(name)
    try:
        seed_features(features)
    except ValueError as exc:
        parser.error(f"--seed-features: {exc}")
    return features


def _serve_until_stopped(handle: SandboxHandle) -> None:
    """Serve until SIGINT or SIGTERM, then stop the sandbox."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"sandbox ready {handle.url}", flush=True)
    try:
        stop.wait()
    finally:
        handle.stop()


if __name__ == "__main__":
    sys.exit(main())
