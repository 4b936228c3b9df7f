"""Fixtures for the local host tests: the test app, in-process hosts and devhost subprocesses."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devhost.config import HostConfig
from devhost.functions import load_app
from devhost.host import DevHost
from tests.devhost_process import DevhostProcesses, HostProcess

TESTAPP = Path(__file__).parent / "testapp"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
NEVER = "0 0 0 1 1 *"  # once a year: the timer stays quiet unless a test asks for it


@dataclass
class AppWorld:
    """What a test needs around one host: its settings, output files and queues."""

    connection: str
    out_dir: Path
    settings: dict[str, str]
    hosts: list[Any] = field(default_factory=list)

    def records(self, function: str) -> list[dict[str, Any]]:
        path = self.out_dir / f"{function}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def queue(self, setting: str = "WORK_QUEUE", *, encoded: bool = True, suffix: str = "") -> QueueClient:
        client = QueueClient.from_connection_string(
            self.connection,
            self.settings[setting] + suffix,
            message_encode_policy=TextBase64EncodePolicy() if encoded else None,
            message_decode_policy=TextBase64DecodePolicy() if encoded else None,
        )
        return client

    def ensure_queue(self, setting: str = "WORK_QUEUE") -> QueueClient:
        client = self.queue(setting)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return client

    def message_count(self, setting: str = "WORK_QUEUE", suffix: str = "") -> int:
        """Messages on the queue (visible or not); 0 if the queue does not exist yet."""
        try:
            return self.queue(setting, suffix=suffix).get_queue_properties().approximate_message_count
        except ResourceNotFoundError:
            return 0

    def queue_is_empty(self, setting: str = "WORK_QUEUE", suffix: str = "") -> bool:
        return self.message_count(setting, suffix) == 0


@pytest.fixture
def world(storage_connection_string: str, tmp_path: Path, unique_name: str, monkeypatch) -> AppWorld:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setenv("TESTAPP_OUT_DIR", str(out_dir))
    monkeypatch.syspath_prepend(str(TESTAPP))
    settings = {
        "AzureWebJobsStorage": storage_connection_string,
        "TESTAPP_OUT_DIR": str(out_dir),
        "TICK_SCHEDULE": NEVER,
        "WORK_QUEUE": f"{unique_name}-work",
        "ASYNC_QUEUE": f"{unique_name}-async",
    }
    return AppWorld(storage_connection_string, out_dir, settings)


@pytest.fixture
def start_host(world: AppWorld, tmp_path: Path) -> Iterator[Callable[..., DevHost]]:
    """Start an in-process host for the test app; every host started is stopped at the end."""
    hosts: list[DevHost] = []

    def start(
        *, host_json: dict[str, Any] | None = None, queue_lock: float = 600, **settings: str
    ) -> DevHost:
        world.settings.update(settings)
        config = HostConfig.from_document(host_json) if host_json else HostConfig.load(TESTAPP / "host.json")
        host = DevHost(
            load_app("devhost_testapp"),
            config=config,
            settings=world.settings,
            app_directory=TESTAPP,
            state_directory=tmp_path / "state",
            port=0,
            queue_lock=timedelta(seconds=queue_lock),
            drain_timeout=30,
        )
        host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()


@pytest.fixture
def spawn_devhost(tmp_path: Path) -> Iterator[Callable[..., HostProcess]]:
    """Run `python -m devhost` on the test app as a real process (for signals, local.settings.json)."""
    with DevhostProcesses(tmp_path) as processes:

        def spawn(env: dict[str, str], *extra_args: str) -> HostProcess:
            return processes.spawn(env, "--app", "devhost_testapp", "--app-dir", str(TESTAPP), *extra_args)

        yield spawn
