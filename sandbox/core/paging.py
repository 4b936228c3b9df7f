"""Server-driven page sizes of Graph and Business Central, and the longest `calendarView` range,
changeable at run time through the admin API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_GRAPH_PAGE_SIZE = 100
DEFAULT_BC_MAX_PAGE_SIZE = 20000


_PAGING_NAMES = {
    "graphPageSize": "graph_page_size",
    "bcMaxPageSize": "bc_max_page_size",
    "graphCalendarViewMaxDays": "graph_calendar_view_max_days",
}
_PAGING_MAY_BE_ZERO = frozenset({"graphCalendarViewMaxDays"})


@dataclass
class Paging:
    """Server-driven page sizes (Graph's is undocumented; BC's maximum is 20,000), and the longest
    `calendarView` range Graph accepts (0: no limit, as the Bookings page states none)."""

    graph_page_size: int = DEFAULT_GRAPH_PAGE_SIZE
    bc_max_page_size: int = DEFAULT_BC_MAX_PAGE_SIZE
    graph_calendar_view_max_days: int = 0

    def to_json(self) -> dict[str, int]:
        return {key: getattr(self, attribute) for key, attribute in _PAGING_NAMES.items()}

    def update(self, data: Mapping[str, Any]) -> None:
        unknown = set(data) - set(_PAGING_NAMES)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for key, value in data.items():
            lowest = 0 if key in _PAGING_MAY_BE_ZERO else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{key} must be a whole number >= {lowest}")
        for key, value in data.items():
            setattr(self, _PAGING_NAMES[key], value)
