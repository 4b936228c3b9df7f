"""Queue triggers through the local host and a real Azurite, following host.json exactly."""

from __future__ import annotations

import base64
import json
import logging

from tests.helpers import wait_for


def test_base64_round_trip_and_delete_on_success(start_host, world) -> None:
    queue = world.ensure_queue()
    start_host()
    text = json.dumps({"id": "one", "note": "héllo ✓ +/="})
    queue.send_message(text)
    done = wait_for(lambda: world.records("work_done"), what="the message to be processed")
    assert done[0]["body"] == text
    assert done[0]["dequeue_count"] == 1
    wait_for(world.queue_is_empty, what="the message to be deleted")


def test_failure_retries_with_the_real_dequeue_count_after_visibility_timeout(start_host, world) -> None:
    queue = world.ensure_queue()
    start_host()
    queue.send_message(json.dumps({"id": "flaky", "fail_times": 2}))
    done = wait_for(lambda: world.records("work_done"), timeout=60, what="the third try to succeed")
    tries = world.records("work")
    assert [t["dequeue_count"] for t in tries] == [1, 2, 3]
    assert done[0]["dequeue_count"] == 3
    # visibilityTimeout is 1 s in the test host.json: a retry never comes sooner.
    assert tries[1]["at"] - tries[0]["at"] >= 0.9
    assert tries[2]["at"] - tries[1]["at"] >= 0.9
    wait_for(world.queue_is_empty, what="the message to be deleted")


def test_poison_after_exactly_max_dequeue_count(start_host, world, caplog) -> None:
    caplog.set_level(logging.INFO, logger="devhost")
    queue = world.ensure_queue()
    start_host()
    text = json.dumps({"id": "bad", "always_fail": True})
    queue.send_message(text)
    poison = world.queue(suffix="-poison")
    wait_for(lambda: world.message_count(suffix="-poison") == 1, timeout=60, what="poison")
    assert [t["dequeue_count"] for t in world.records("work")] == [1, 2, 3]
    assert world.records("work_done") == []
    # Copied to poison first, then deleted from the queue (never lost in between).
    wait_for(world.queue_is_empty, what="the original to be deleted")
    (moved,) = poison.peek_messages()
    assert moved.content == text  # decoded by the same base64 policy: unchanged
    poison_name = world.settings["WORK_QUEUE"] + "-poison"
    expected = f"Message has reached MaxDequeueCount of 3. Moving message to queue '{poison_name}'."
    assert expected in [r.getMessage() for r in caplog.records]


def test_message_that_is_not_base64_goes_straight_to_poison(start_host, world) -> None:
    world.ensure_queue()
    start_host()
    world.queue(encoded=False).send_message("this is not base64!")
    poison = world.queue(encoded=False, suffix="-poison")
    wait_for(lambda: world.message_count(suffix="-poison") == 1, what="poison")
    assert [m.content for m in poison.peek_messages()] == ["this is not base64!"]
    assert world.records("work") == []


def test_message_already_over_the_count_goes_to_poison_unrun(start_host, world) -> None:
    queue = world.ensure_queue()
    queue.send_message(json.dumps({"id": "old"}))
    for _ in range(3):  # maxDequeueCount is 3: three earlier deliveries used up every try
        (message,) = list(queue.receive_messages(max_messages=1, visibility_timeout=30))
        queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
    start_host()
    wait_for(lambda: world.message_count(suffix="-poison") == 1, what="poison")
    assert world.records("work") == []


def test_runs_up_to_batch_size_at_once(start_host, world) -> None:
    queue = world.ensure_queue()
    # All six wait before the host starts, so its first fetch takes a full batch. (Sent while it
    # polls, a first fetch of 3 would leave 3 running, above newBatchThreshold 2: no second fetch
    # until one finishes, as the real host does.)
    for n in range(6):
        queue.send_message(json.dumps({"id": n, "hold": f"b{n}"}))
    host = start_host()
    started = lambda: sorted(p.name for p in world.out_dir.glob("started-*"))  # noqa: E731
    wait_for(lambda: len(started()) >= 4, what="a full batch to run at once")
    listener = next(q for q in host.queues if q.spec.name == "work")
    assert listener.running <= 4 and len(started()) == 4  # batchSize 4: the other two wait
    for n in range(6):
        (world.out_dir / f"release-b{n}").touch()
    wait_for(lambda: len(world.records("work_done")) == 6, what="all six to finish")
    assert len(started()) == 6


def test_async_function_runs(start_host, world) -> None:
    queue = world.ensure_queue("ASYNC_QUEUE")
    start_host()
    queue.send_message("async body")
    assert wait_for(lambda: world.records("work_async"))[0]["body"] == "async body"


def test_raw_base64_matches_what_the_policy_wrote(world) -> None:
    """The sender's policy writes standard base64 of UTF-8, which is what the host decodes."""
    queue = world.ensure_queue()
    queue.send_message("ünïcode")
    (raw,) = world.queue(encoded=False).peek_messages()
    assert base64.b64decode(raw.content, validate=True).decode("utf-8") == "ünïcode"


def test_a_disabled_function_leaves_its_queue_alone_and_still_runs_from_the_admin_endpoint(
    start_host, world
) -> None:
    """`AzureWebJobs.<name>.Disabled` (Learn, "How to disable functions in Azure Functions"): the
    host ignores the trigger, the admin endpoint still runs the function."""
    work = world.ensure_queue()
    other = world.ensure_queue("ASYNC_QUEUE")
    host = start_host(**{"AzureWebJobs.work.Disabled": "true"})
    work.send_message(json.dumps({"id": "waits"}))
    other.send_message("runs")
    # The enabled listener has polled and run its message: the disabled one has no listener at all.
    wait_for(lambda: world.records("work_async"), what="the enabled function to run")
    assert world.records("work") == [] and world.message_count() == 1
    assert {f["name"]: f["disabled"] for f in host.status()["functions"]}["work"] is True
    assert host.run_function_now("work", json.dumps({"id": "by hand"})) == 202
    done = wait_for(lambda: world.records("work_done"), what="the manual run")
    assert json.loads(done[0]["body"]) == {"id": "by hand"}
    assert world.message_count() == 1  # the queued message is still there
