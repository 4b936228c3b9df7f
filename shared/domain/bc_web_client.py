"""Links into Business Central's web client: an invoice number opens that invoice.

Learn, "Web client URL" (dev-itpro/developer/devenv-web-client-urls): the syntax is
`https://<hostname>[/<aadtenantid>][/<environmentname>]/?company=<companyname>&page=<ID>&filter=<filter>`,
where `company` is the company's *name* (the `name` of API v2.0's `companies`, not its display
name) and a filter reads `'<field caption>' IS '<value>'`. Pages (BaseApp, microsoft/BCApps):
page 43 "Sales Invoice" shows a draft (table 36 "Sales Header"), page 132 "Posted Sales Invoice" a
posted one (table 112 "Sales Invoice Header"); both key on "No.". The booking knows whether its
invoice was posted (`Booking.invoice_posted`, kept by `reconcile_invoices`), and its
`invoiceNumber` is then the posted number.

The web client's host is the API host of the same cloud without its `api.` label
(`api.businesscentral.dynamics.com` -> `businesscentral.dynamics.com`); any other API host (the local
sandbox) gets the public cloud's, so the link is built the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from shared.domain.models import Booking, InvoiceSource

PUBLIC_WEB_CLIENT_HOST = "businesscentral.dynamics.com"
SALES_INVOICE_PAGE = 43
POSTED_SALES_INVOICE_PAGE = 132


def web_client_host(bc_base_url: str) -> str:
    host = (urlsplit(bc_base_url).hostname or "").lower()
    if host.startswith("api.") and ".dynamics." in host:
        return host[len("api.") :]
    return PUBLIC_WEB_CLIENT_HOST


def environment_url(bc_base_url: str, tenant_id: str, environment: str) -> str:
    """The web client of one tenant's environment."""
    return f"https://{web_client_host(bc_base_url)}/{quote(tenant_id, safe='')}/{quote(environment, safe='')}"


@dataclass(frozen=True)
class InvoiceLinks:
    """Builds a booking's invoice link from the environment's web client and the company name."""

    environment_url: str
    company_name: str | None

    def invoice_url(self, number: str, *, posted: bool) -> str | None:
        if not self.company_name or not number or "'" in number:
            return None
        page = POSTED_SALES_INVOICE_PAGE if posted else SALES_INVOICE_PAGE
        query = urlencode(
            {"company": self.company_name, "page": page, "filter": f"'No.' IS '{number}'"}, quote_via=quote
        )
        return f"{self.environment_url}/?{query}"

    def for_booking(self, booking: Booking) -> str | None:
        """The link of the invoice the app created (a number marked by hand is no Business Central number)."""
        if booking.source is not InvoiceSource.APP or not booking.invoice_number:
            return None
        return self.invoice_url(booking.invoice_number, posted=booking.invoice_posted)
