"""reconcile_invoices' reads of Business Central `salesInvoices`: few requests, small answers.

Reading a row runs the API page's `OnAfterGetRecord` (AL `APIV2SalesInvoices`: invoice discount
redistribution for a draft, the remaining amount of a posted invoice), so every read is limited to
this app's invoices (`startswith(externalDocumentNumber,'BKG-')`), asks for pages of `PAGE_SIZE`
rows (`Prefer: odata.maxpagesize`) and is handed out page by page, so the caller saves its
progress after each one. `@odata.nextLink` is followed exactly as given.

- `changed_pages`: rows changed since an instant, oldest change first (`$orderby=lastModifiedDateTime`,
  `SystemModifiedAt` of the invoice aggregate: AL `APIV2SalesInvoices`, `field(lastModifiedDateTime;
  SystemModifiedAt)`); a read cut off after page n resumes from page n's last change.
- `unposted_pages`: the app's invoices Business Central still holds as a Sales Header: `Draft`,
  `In Review` (Pending Approval) and, when asked, `Open` (codeunit 5477 "Sales Invoice Aggregator",
  `InsertOrModifyFromSalesHeader`, maps Released and Pending Prepayment to Open, the word a posted
  invoice has too). One `or` on `status`; `in` is avoided (reported to return the whole table).
- `get`: by id, `None` on 404 (a deleted draft; posting keeps the id, AL `APIV2SalesInvoices.Post`).
Every request goes through the client's transport, so it counts against the same budget as invoicing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared.adapters.business_central import BusinessCentralClient, odata_string
from shared.domain.errors import BusinessCentralError
from shared.domain.models import EXTERNAL_DOCUMENT_PREFIX
from shared.domain.moments import aware, iso_utc
from shared.domain.reconcile_rules import InvoicePage, InvoiceState

SELECT = "id,number,externalDocumentNumber,status,lastModifiedDateTime"
PAGE_SIZE = 1000
"""Rows per page asked for: one page's `OnAfterGetRecord` runs stay far inside a request's time."""
MAX_PAGES = 10_000
"""A guard against a server that keeps answering with a nextLink."""
OWN_INVOICES = f"startswith(externalDocumentNumber,{odata_string(EXTERNAL_DOCUMENT_PREFIX)})"
IN_REVIEW = "In_x0020_Review"
"""Enum 5477's "In Review" as the page's EDM enum member (`$metadata`, and the JSON, escape the blank
as `_x0020_`); a filter's enum literal names the member. Should a service want the AL name instead,
`unposted_pages` asks once more with it (see there)."""


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
    def __init__(self, client: BusinessCentralClient, *, page_size: int = PAGE_SIZE) -> None:
        self._client = client
        self.page_size = page_size

    def pages(self, query: dict[str, str]) -> Iterator[InvoicePage]:
        page = self._client.read("salesInvoices", query, page_size=self.page_size)
        for _ in range(MAX_PAGES):
            value = page.get("value")
            rows = [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []
            yield InvoicePage([_state(row) for row in rows])
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return
            page = self._client.read_link(link, page_size=self.page_size)
        raise BusinessCentralError(f"salesInvoices kept paging after {MAX_PAGES} pages", transient=True)

    def changed_pages(self, since: datetime | None) -> Iterator[InvoicePage]:
        where = OWN_INVOICES
        if since is not None:
            where += f" and lastModifiedDateTime gt {iso_utc(since)}"
        return self.pages({"$filter": where, "$orderby": "lastModifiedDateTime", "$select": SELECT})

    def unposted_pages(self, include_open: bool) -> Iterator[InvoicePage]:
        for in_review in (IN_REVIEW, "In Review"):
            statuses = ["Draft", in_review] + (["Open"] if include_open else [])
            either = " or ".join(f"status eq {odata_string(s)}" for s in statuses)
            pages = self.pages({"$filter": f"{OWN_INVOICES} and ({either})", "$select": SELECT})
            try:
                first = next(pages)
            except BusinessCentralError as exc:
                # Not settled by a published source: the AL name, with its blank, once, if refused.
                if exc.status != 400 or in_review != IN_REVIEW:
                    raise
                continue
            yield first
            yield from pages
            return

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
        return [row for page in self.pages(query) for row in page.rows]
