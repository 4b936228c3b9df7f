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


def problem(status: int, title: str, detail: str, **extensions: Any) -> func.HttpResponse:
    document = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extensions}
    return func.HttpResponse(
        json.dumps(document, ensure_ascii=False), status_code=status, mimetype=PROBLEM_JSON, charset="utf-8"
    )
