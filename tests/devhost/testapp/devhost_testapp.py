"""A small function app that exercises every trigger the local host supports.

Each function records what it saw as a JSON line in `$TESTAPP_OUT_DIR/<function>.jsonl`, so tests
(in-process or against a devhost subprocess) can assert what the host passed in.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import azure.functions as func
from azure.functions.queue import QueueMessage

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_write_lock = threading.Lock()


def record(function: str, **fields: object) -> None:
    out = Path(os.environ["TESTAPP_OUT_DIR"])
    with _write_lock, (out / f"{function}.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"at": time.time(), **fields}) + "\n")


@app.route(route="hello/{name}", methods=["GET", "POST"])
def hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    document = {
        "method": req.method,
        "name": req.route_params.get("name"),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "header": req.headers.get("x-test-header"),
        "url": req.url,
        "traceparent": context.trace_context.trace_parent,
    }
    return func.HttpResponse(
        json.dumps(document), status_code=201, mimetype="application/json", headers={"X-Echo": "yes"}
    )


@app.route(route="public", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def public(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("open")


@app.route(route="items/{id:int}", methods=["GET"])
def item_by_number(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"item {req.route_params['id']}")


@app.route(route="items/special", methods=["GET"])
def special_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret internals that must not reach the client")


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due)


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: QueueMessage) -> None:
    body = msg.get_body().decode("utf-8")
    try:
        order = json.loads(body)
    except ValueError:
        order = {}
    if not isinstance(order, dict):
        order = {}
    record("work", id=msg.id, dequeue_count=msg.dequeue_count, body=body)
    if order.get("hold"):
        marker = Path(os.environ["TESTAPP_OUT_DIR"]) / f"started-{order['hold']}"
        marker.touch()
        release = Path(os.environ["TESTAPP_OUT_DIR"]) / f"release-{order['hold']}"
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if order.get("always_fail") or msg.dequeue_count <= int(order.get("fail_times", 0)):
        raise RuntimeError(f"failing on try {msg.dequeue_count} as asked")
    record("work_done", id=msg.id, dequeue_count=msg.dequeue_count, body=body)


@app.queue_trigger(arg_name="msg", queue_name="%ASYNC_QUEUE%", connection="AzureWebJobsStorage")
async def work_async(msg: QueueMessage) -> None:
    record("work_async", body=msg.get_body().decode("utf-8"), dequeue_count=msg.dequeue_count)
