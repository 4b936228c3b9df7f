"""Listing bookings newest first across businesses: cursors into each business's list index and
the merge of their slices into one page.

Each business (partition) keeps its bookings in appointment order, newest first (the store's list
index). A page over several businesses is a k-way merge of one slice per business. A slice may stop
early (the page is full, or a sparse filter used up its storage round trips), so the merge only
emits rows that are known to come before every unfinished slice's stopping point: no booking is
skipped or shown twice, however the businesses interleave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.models import Booking


@dataclass(frozen=True)
class Cursor:
    """Where a business's list resumes.

    `key`: every row of the business up to this index key (inclusive) has been read ("": none).
    `scan`: a scan that stopped early (sparse matches): the lower bound its query started from and
    the storage's own continuation marker, so the next read continues that scan instead of reading
    the skipped rows again.
    """

    key: str
    scan: tuple[str, tuple[tuple[str, str], ...]] | None = None

    def covers(self, row_key: str) -> bool:
        """True if everything up to `row_key` of this business has been read."""
        return row_key <= self.key

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"k": self.key}
        if self.scan is not None:
            document["s"], document["m"] = self.scan[0], dict(self.scan[1])
        return document

    @classmethod
    def from_json(cls, document: object) -> Cursor:
        if not isinstance(document, dict) or not isinstance(document.get("k"), str):
            raise ValueError("not a cursor")
        if "s" not in document:
            return cls(document["k"])
        start, marker = document.get("s"), document.get("m")
        if not isinstance(start, str) or not isinstance(marker, dict):
            raise ValueError("not a cursor")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in marker.items()):
            raise ValueError("not a cursor")
        return cls(document["k"], (start, tuple(sorted(marker.items()))))


@dataclass(frozen=True)
class IndexSlice:
    """Matches of one business in list order (with their index row keys) and where it resumes
    (None: the business has no more matches)."""

    items: list[tuple[str, Booking]]
    resume: Cursor | None


def merge_slices(
    slices: Mapping[str, IndexSlice], previous: Mapping[str, Cursor | None], top: int
) -> tuple[list[Booking], dict[str, Cursor | None]]:
    """Up to `top` bookings newest first, and the cursor of every business not finished yet."""
    bounds = [piece.resume for piece in slices.values() if piece.resume is not None]
    candidates = sorted(
        (row_key, business, booking) for business, piece in slices.items() for row_key, booking in piece.items
    )
    emitted: list[tuple[str, str, Booking]] = []
    for row_key, business, booking in candidates:
        if len(emitted) >= top or not all(bound.covers(row_key) for bound in bounds):
            break
        emitted.append((row_key, business, booking))
    taken = Counter(business for _, business, _ in emitted)
    last = {business: row_key for row_key, business, _ in emitted}
    following: dict[str, Cursor | None] = {}
    for business, piece in slices.items():
        if taken[business] == len(piece.items):
            if piece.resume is not None:
                following[business] = piece.resume
        elif taken[business]:
            following[business] = Cursor(last[business])
        else:
            following[business] = previous.get(business)
    return [booking for _, _, booking in emitted], following
