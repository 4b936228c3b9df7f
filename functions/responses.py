"""Shaping HTTP responses: JSON bodies and RFC 9457 problem details."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

PROBLEM_JSON = "application/problem+json"


def json_response(
    document: Any, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(document, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def problem(
    status: int, title: str, detail: str, *, retry_after: int | None = None, **extensions: Any
) -> func.HttpResponse:
    """A problem document; `retry_after` (seconds) adds the `Retry-After` header of a 503."""
    document = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extensions}
    return func.HttpResponse(
        json.dumps(document, ensure_ascii=False),
        status_code=status,
        mimetype=PROBLEM_JSON,
        charset="utf-8",
        headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
    )
