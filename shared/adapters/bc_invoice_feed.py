"""reconcile_invoices' reads of Business Central `salesInvoices`: few requests, small answers.

- `changed_since`: `$filter=lastModifiedDateTime gt <instant>` with `$select`, following
  `@odata.nextLink` (server-driven paging, up to 20,000 rows a page). `lastModifiedDateTime` is
  `SystemModifiedAt` of the invoice aggregate (AL `APIV2SalesInvoices`, `field(lastModifiedDateTime;
  SystemModifiedAt)`), and the page is `ChangeTrackingAllowed`; `DateTimeOffset` comparisons are
  documented on Learn (`use-filter-expressions-in-odata-uris`).
- `draft_ids`: `$filter=status eq 'Draft'` (the filter Learn shows, `status eq 'Open'`, on this very
  entity), ids only: a known draft missing from it was posted or deleted.
- `get`: by id, `None` on 404 (a deleted draft; posting keeps the id, AL `APIV2SalesInvoices.Post`).
Every request goes through the client's transport, so it counts against the same budget as invoicing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared.adapters.business_central import BusinessCentralClient, odata_string
from shared.domain.errors import BusinessCentralError
from shared.domain.moments import aware, iso_utc
from shared.domain.reconcile_rules import InvoiceState

SELECT = "id,number,externalDocumentNumber,status,lastModifiedDateTime"
MAX_PAGES = 1000
"""A guard against a server that keeps answering with a nextLink (20,000 rows a page: 20 million)."""


def _state(row: dict[str, Any]) -> InvoiceState:
    return InvoiceState(
        id=str(row.get("id", "")),
        number=str(row.get("number") or ""),
        external_document_number=str(row.get("externalDocumentNumber") or ""),
        status=_unescape(str(row.get("status") or "")),
        last_modified=aware(row.get("lastModifiedDateTime")) if row.get("lastModifiedDateTime") else None,
    )


def _unescape(value: str) -> str:
    """Enum values with blanks come escaped (`In_x0020_Review`); the API shows them as BC names them."""
    return value.replace("_x0020_", " ").strip() or " "


class InvoiceFeed:
    def __init__(self, client: BusinessCentralClient) -> None:
        self._client = client

    def _rows(self, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        page = self._client.read("salesInvoices", query)
        for _ in range(MAX_PAGES):
            value = page.get("value")
            if isinstance(value, list):
                yield from (row for row in value if isinstance(row, dict))
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return
            page = self._client.read(link)
        raise BusinessCentralError(f"salesInvoices kept paging after {MAX_PAGES} pages", transient=True)

    def changed_since(self, since: datetime | None) -> Iterator[InvoiceState]:
        query = {"$select": SELECT}
        if since is not None:
            query["$filter"] = f"lastModifiedDateTime gt {iso_utc(since)}"
        return (_state(row) for row in self._rows(query))

    def draft_ids(self) -> set[str]:
        query = {"$filter": "status eq 'Draft'", "$select": "id"}
        return {str(row.get("id")) for row in self._rows(query)}

    def get(self, invoice_id: str) -> InvoiceState | None:
        try:
            row = self._client.read(f"salesInvoices({invoice_id})", {"$select": SELECT})
        except BusinessCentralError as exc:
            if exc.status == 404:
                return None
            raise
        return _state(row)

    def find_by_external_document_number(self, number: str) -> list[InvoiceState]:
        query = {"$filter": f"externalDocumentNumber eq {odata_string(number.upper())}", "$select": SELECT}
        return [_state(row) for row in self._rows(query)]
