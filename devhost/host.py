"""The local Functions host: ties discovery, HTTP, timers and queues together.

Start order follows the real host: read host.json and settings, discover functions (resolving
`%SETTING%`), then open listeners. Stop order makes shutdown clean: stop taking new work (HTTP,
timers, queue polling), let running invocations finish (bounded by a drain timeout), then complete
their messages. A message whose invocation did not finish keeps its lock and becomes visible again
later: nothing is lost and nothing is half-done by the host.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

from devhost.auth import EasyAuth
from devhost.config import HostConfig, HostConfigError
from devhost.functions import FunctionSpec, discover_functions
from devhost.http import HttpFront, Keys, Route
from devhost.identity import ManagedIdentityEndpoint, sandbox_token_source
from devhost.invoker import Invoker
from devhost.queues import DEFAULT_LOCK, QueueListener
from devhost.timers import ScheduleStatusStore, TimerScheduler, timer_input
from shared.adapters.storage import STORAGE_CALLS

log = logging.getLogger("devhost")

SUPPORTED_TRIGGERS = ("httpTrigger", "timerTrigger", "queueTrigger")


class DevHost:
    """A running host for one function app."""

    def __init__(
        self,
        app: Any,
        *,
        config: HostConfig,
        settings: Mapping[str, str],
        app_directory: Path,
        state_directory: Path,
        bind: str = "127.0.0.1",
        port: int = 7071,
        queue_lock: timedelta = DEFAULT_LOCK,
        drain_timeout: float = 60.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`clock` is what token expiry is checked against (default: the system clock)."""
        self.config = config
        self.settings = dict(settings)
        self.drain_timeout = drain_timeout
        self.identity_endpoint = self._identity_endpoint(bind)
        self.functions = discover_functions(app, self.settings)
        for spec in self.functions:
            if spec.trigger_type not in SUPPORTED_TRIGGERS:
                raise HostConfigError(
                    f"function {spec.name}: trigger {spec.trigger_type} is not supported here"
                )
        self.disabled = disabled_functions(self.functions, self.settings)
        self.invoker = Invoker(str(app_directory))
        self.timers = [
            TimerScheduler(spec, self.invoker, ScheduleStatusStore(state_directory))
            for spec in self._of("timerTrigger")
        ]
        self.queues = [
            QueueListener(spec, self._connection(spec), config.queues, self.invoker, lock=queue_lock)
            for spec in self._of("queueTrigger")
        ]
        routes = [Route.compile(spec, config.route_prefix) for spec in self._of("httpTrigger")]
        keys = Keys(
            function_key=self.settings.get("DEVHOST_FUNCTION_KEY") or None,
            master_key=self.settings.get("DEVHOST_MASTER_KEY") or None,
        )
        self.easy_auth = EasyAuth(self.settings, clock=clock)
        self.http = HttpFront(
            routes,
            self.invoker,
            keys,
            self.run_function_now,
            self.status,
            easy_auth=self.easy_auth,
            bind=bind,
            port=port,
        )
        self._state = "Created"
        self._stopped = threading.Event()

    def _identity_endpoint(self, bind: str) -> ManagedIdentityEndpoint | None:
        """App Service's managed identity endpoint, when a token source is configured: its
        IDENTITY_ENDPOINT / IDENTITY_HEADER go into the app's environment, as the platform's do."""
        source = self.settings.get("DEVHOST_MANAGED_IDENTITY_SOURCE")
        if not source:
            return None
        endpoint = ManagedIdentityEndpoint(sandbox_token_source(source), bind=bind)
        for name, value in endpoint.environment().items():
            self.settings[name] = value
            os.environ[name] = value  # the app runs in this process and reads them per request
        return endpoint

    def _of(self, trigger_type: str) -> list[FunctionSpec]:
        """The functions of one trigger type whose trigger runs (a disabled one's never does)."""
        return [
            spec
            for spec in self.functions
            if spec.trigger_type == trigger_type and spec.name not in self.disabled
        ]

    def _connection(self, spec: FunctionSpec) -> str:
        name = str(spec.trigger.get("connection") or "AzureWebJobsStorage")
        value = self.settings.get(name)
        if not value:
            raise HostConfigError(
                f"function {spec.name}: the queue connection setting {name} is missing "
                "(a storage connection string, e.g. Azurite's)"
            )
        return value

    @property
    def url(self) -> str:
        host = self.http.server.server_address[0]
        return f"http://{host}:{self.http.port}"

    def status(self) -> Mapping[str, Any]:
        return {
            "state": self._state,
            "functions": [
                {"name": s.name, "trigger": s.trigger_type, "disabled": s.name in self.disabled}
                for s in self.functions
            ],
            "inFlight": self.invoker.in_flight,
            # Storage round trips of this process by kind (what `bench/` divides per invoice).
            "storageCalls": STORAGE_CALLS.snapshot(),
        }

    def start(self) -> None:
        if self.identity_endpoint is not None:
            self.identity_endpoint.start()
            log.info("Managed identity endpoint: %s", self.identity_endpoint.url)
        for listener in self.queues:
            listener.start()
        for timer in self.timers:
            timer.start()
        self.http.start()
        self._state = "Running"
        for spec in self.functions:
            where = ""
            if spec.name in self.disabled:
                where = f"disabled (AzureWebJobs.{spec.name}.Disabled)"
            elif spec.trigger_type == "httpTrigger":
                route = next(r for r in self.http.routes if r.spec is spec)
                methods = ",".join(sorted(route.methods)) if route.methods else "all"
                where = f"[{methods}] {self.url}/{route.template} (auth {route.auth_level})"
            elif spec.trigger_type == "timerTrigger":
                where = f"schedule '{spec.trigger['schedule']}' (UTC)"
            elif spec.trigger_type == "queueTrigger":
                where = f"'{spec.trigger['queueName']}'"
            log.info("Function %s: %s %s", spec.name, spec.short_trigger, where)

    def run_function_now(self, name: str, value: str) -> int:
        """The admin endpoint: run a non-HTTP function once in the background (202)."""
        spec = next((s for s in self.functions if s.name.lower() == name.lower()), None)
        if spec is None:
            return HTTPStatus.NOT_FOUND
        if spec.trigger_type == "httpTrigger":
            return HTTPStatus.BAD_REQUEST
        if self._state != "Running":
            return HTTPStatus.SERVICE_UNAVAILABLE
        trigger_input: Any
        if spec.trigger_type == "timerTrigger":
            trigger_input = timer_input(past_due=False)
        else:
            from azure.functions.queue import QueueMessage

            trigger_input = QueueMessage(body=value.encode("utf-8"), dequeue_count=1)
        try:
            self.invoker.submit(spec, trigger_input, reason="Manual run (admin endpoint)")
        except RuntimeError:
            return HTTPStatus.SERVICE_UNAVAILABLE
        return HTTPStatus.ACCEPTED

    def stop(self) -> bool:
        """Stop cleanly. True if every running invocation finished within the drain timeout."""
        if self._stopped.is_set():
            return True
        self._state = "Stopping"
        log.info("Stopping: no new work; waiting for %d running invocation(s)", self.invoker.in_flight)
        self.http.stop()
        for timer in self.timers:
            timer.stop()
        for listener in self.queues:
            listener.stop_polling()
        drained = self.invoker.wait_idle(self.drain_timeout)
        if not drained:
            log.warning(
                "%d invocation(s) still running after %.0fs; their messages stay locked and reappear later",
                self.invoker.in_flight,
                self.drain_timeout,
            )
        for listener in self.queues:
            listener.join(5.0)
        for timer in self.timers:
            timer.join(5.0)
        self.invoker.shutdown()
        if self.identity_endpoint is not None:
            self.identity_endpoint.stop()
            for name, value in self.identity_endpoint.environment().items():
                if os.environ.get(name) == value:
                    del os.environ[name]
        self._state = "Stopped"
        self._stopped.set()
        log.info("Stopped")
        return drained


def disabled_functions(functions: list[FunctionSpec], settings: Mapping[str, str]) -> frozenset[str]:
    """Functions switched off by the app setting `AzureWebJobs.<FUNCTION_NAME>.Disabled` = true
    (Learn, "How to disable functions in Azure Functions"): the host ignores their triggers (no
    queue listener, no timer, no HTTP route), while the admin endpoint can still run them."""
    return frozenset(
        spec.name
        for spec in functions
        if (settings.get(f"AzureWebJobs.{spec.name}.Disabled") or "").strip().lower() in ("true", "1")
    )
