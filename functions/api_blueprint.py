"""The blueprint of the HTTP API: every route it registers is served under `/api`.

`host.json` sets `routePrefix` to "" so that the portal can answer at `/` (the host has no other way
to serve the site root: azure-functions-host#9092), and the API keeps its `/api/...` URLs because
this blueprint puts `api/` in front of each route it registers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func

API_PREFIX = "api"


class ApiBlueprint(func.Blueprint):
    """A `func.Blueprint` whose `route(...)` templates are relative to `/api`."""

    def route(self, route: str | None = None, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        if route is None:
            raise ValueError("API functions name their route (it is public interface)")
        return super().route(f"{API_PREFIX}/{route.lstrip('/')}", *args, **kwargs)
