"""`python -m devhost` as a real process: local.settings.json, signals, clean shutdown."""

from __future__ import annotations

import json
import signal

import requests

from tests.helpers import wait_for


def test_local_settings_values_load_and_environment_wins(spawn_devhost, world, tmp_path) -> None:
    settings_file = tmp_path / "local.settings.json"
    values = {**world.settings, "WORK_QUEUE": world.settings["WORK_QUEUE"] + "-fromfile"}
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    host = spawn_devhost({"WORK_QUEUE": world.settings["WORK_QUEUE"]}, "--settings", str(settings_file))
    assert requests.get(f"{host.url}/api/public", timeout=10).text == "open"
    world.ensure_queue().send_message(json.dumps({"id": "env-wins"}))
    done = wait_for(lambda: world.records("work_done"), what="the message on the environment's queue")
    assert json.loads(done[0]["body"]) == {"id": "env-wins"}
    host.process.send_signal(signal.SIGTERM)
    assert host.process.wait(30) == 0


def test_sigterm_lets_the_running_message_finish(spawn_devhost, world) -> None:
    queue = world.ensure_queue()
    host = spawn_devhost(world.settings)
    queue.send_message(json.dumps({"id": "inflight", "hold": "s1"}))
    wait_for((world.out_dir / "started-s1").exists, what="the message to be in flight")
    host.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "Stopping: no new work" in host.log(), what="the host to begin stopping")
    assert host.process.poll() is None  # still waiting for the running invocation
    (world.out_dir / "release-s1").touch()
    assert host.process.wait(30) == 0
    assert [d["dequeue_count"] for d in world.records("work_done")] == [1]
    assert world.queue_is_empty()
    assert "Executed 'Functions.work' (Succeeded" in host.log()


def test_unfinished_message_reappears_after_its_lock(spawn_devhost, world) -> None:
    queue = world.ensure_queue()
    host = spawn_devhost(world.settings, "--drain-seconds", "0.5", "--queue-lock-seconds", "2")
    queue.send_message(json.dumps({"id": "cut", "hold": "c1"}))
    wait_for((world.out_dir / "started-c1").exists, what="the message to be in flight")
    host.process.send_signal(signal.SIGINT)
    assert host.process.wait(30) == 1  # could not drain: said so, left the message locked
    assert world.records("work_done") == []
    (world.out_dir / "release-c1").touch()
    spawn_devhost(world.settings)
    done = wait_for(lambda: world.records("work_done"), timeout=60, what="the message to come back")
    assert done[0]["dequeue_count"] == 2
    wait_for(world.queue_is_empty, what="the message to be deleted")


def test_port_in_use_is_a_clear_error(spawn_devhost, world, tmp_path) -> None:
    import os
    import subprocess
    import sys

    first = spawn_devhost(world.settings)
    port = first.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", port, "--app", "devhost_testapp",
         "--app-dir", str(tmp_path.parent), "--state-dir", str(tmp_path / "s2")],
        capture_output=True, text=True, timeout=60, env={**os.environ, **world.settings},
    )  # fmt: skip
    assert result.returncode != 0
