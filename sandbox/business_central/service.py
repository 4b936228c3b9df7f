"""Business Central API v2.0 stand-in: the HTTP face of one company.

Paths are `{BC_BASE_URL}/{tenant}/{environment}/api/v2.0/companies({id})/...` with bare GUID keys.
Collections support the query options the product relies on (`$filter`, `$orderby`, `$select`,
`$top`, `$skip`, `$expand=salesInvoiceLines`, `$count`) and server-driven paging with
`@odata.nextLink` (`Prefer: odata.maxpagesize=N` honoured). Errors use BC's body:
`{"error": {"code": "...", "message": "...  CorrelationId:  <guid>."}}`; tokens for another
resource are 401 `Authentication_InvalidCredentials`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sandbox.business_central.company import CompanyStore, Record
from sandbox.business_central.pages import ENTITY_OPTIONS, ODataPages, Rows
from sandbox.business_central.protocol import BC_CONTENT_TYPE
from sandbox.business_central.schema import (
    COMPANY,
    CUSTOMER,
    ITEM,
    REFERENCE_TYPES,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    BcError,
    EntityType,
)
from sandbox.core.httpcore import (
    HttpError,
    Request,
    Response,
    Router,
)
from sandbox.directory import Directory


class BusinessCentralService(ODataPages):
    """Mounted at `{base}/bc/v2.0`; one environment with one company."""

    name = "bc"

    def __init__(
        self,
        store: CompanyStore,
        directory: Directory,
        base_url: str,
        environment: str,
        max_page_size: Callable[[], int],
    ) -> None:
        self.store = store
        self.directory = directory
        self.base_url = base_url.rstrip("/")
        self.environment = environment
        self._max_page_size = max_page_size
        self.router = Router(prefix="/{tenant}/{environment}/api/v2.0/")
        add = self.router.add
        add("GET", "companies", self._companies)
        add("GET", "companies({companyId})", self._company_entity)
        add("GET", "companies({companyId})/companyInformation", self._company_information)
        company = "companies({companyId})/"
        for set_name, entity in (("customers", CUSTOMER), ("items", ITEM), ("salesInvoices", SALES_INVOICE)):
            add("GET", company + set_name, self._list_handler(set_name, entity))
            add("POST", company + set_name, self._create_handler(set_name, entity))
            add("GET", company + set_name + "({id})", self._get_handler(set_name, entity))
            add("PATCH", company + set_name + "({id})", self._update_handler(set_name, entity))
            add("DELETE", company + set_name + "({id})", self._delete_handler(set_name, entity))
        invoice = company + "salesInvoices({id})/"
        add("GET", invoice + "salesInvoiceLines", self._list_lines)
        add("POST", invoice + "salesInvoiceLines", self._create_line)
        add("GET", invoice + "salesInvoiceLines({lineId})", self._get_line)
        add("DELETE", invoice + "salesInvoiceLines({lineId})", self._delete_line)
        add("POST", invoice + "Microsoft.NAV.post", self._action(self.store.post_invoice))
        add("POST", invoice + "Microsoft.NAV.cancel", self._action(self.store.cancel_invoice))
        for set_name in REFERENCE_TYPES:
            add("GET", company + set_name, self._reference_list(set_name))
            add("GET", company + set_name + "({id})", self._reference_get(set_name))

    def _check_company(self, request: Request, params: dict[str, str]) -> None:
        if params["environment"].lower() != self.environment.lower():
            raise HttpError(
                self.error(
                    request,
                    404,
                    "BadRequest_NotFound",
                    f"Environment '{params['environment']}' does not exist.",
                )
            )
        company_id = params.get("companyId")
        if company_id is None:
            return
        if _guid(company_id) != self.store.id:
            raise HttpError(
                self.error(
                    request,
                    404,
                    "BadRequest_NotFound",
                    f"The company does not exist. Identification fields and values: Id='{company_id}'",
                )
            )

    def _key(self, request: Request, value: str) -> str:
        key = _guid(value)
        if key is None:
            raise HttpError(self.error(request, 400, "BadRequest", "Bad Request - Error in query syntax."))
        return key

    def _records(self, set_name: str) -> Any:
        return {
            "customers": self.store.customers,
            "items": self.store.items,
            "salesInvoices": self.store.invoices,
        }[set_name]

    def _renderer(self, entity: EntityType, record: Record) -> Callable[[bool], dict[str, Any]]:
        """Render lazily (only the rows of the page), under the store lock."""
        store = self.store

        def render(expand: bool) -> dict[str, Any]:
            with store.lock:
                if entity is SALES_INVOICE:
                    return store.render_invoice(record, expand)
                return store.render(entity, record)

        return render

    def _rows(self, set_name: str, entity: EntityType) -> Rows:
        with self.store.lock:
            records = sorted(self._records(set_name).values(), key=lambda r: str(r.values["number"]))
            return [(record.values, self._renderer(entity, record)) for record in records]

    # -- routes: companies ----------------------------------------------------------------------

    def _companies(self, request: Request, params: dict[str, str]) -> Response:
        self._check_company(request, params)
        company = dict(self.store.company)
        rows: Rows = [(company, lambda expand: dict(company))]
        response = self._collection(request, params, COMPANY, rows, "companies")
        body = response.json_body()
        if response.status == 200 and isinstance(body, dict):
            body["@odata.context"] = f"{self._root(params)}/$metadata#companies"
            return Response.json(200, body, content_type=BC_CONTENT_TYPE)
        return response

    def _company_entity(self, request: Request, params: dict[str, str]) -> Response:
        self._check_company(request, params)
        body = {"@odata.context": f"{self._root(params)}/$metadata#companies/$entity"}
        body.update(self.store.company)
        return Response.json(200, body, content_type=BC_CONTENT_TYPE)

    def _company_information(self, request: Request, params: dict[str, str]) -> Response:
        """API v2.0 `companyInformation` (APIV2CompanyInformation.Page.al): one row; `displayName` is
        the Company Information's Name, `currencyCode` the General Ledger Setup's "LCY Code"."""
        self._check_company(request, params)
        company = self.store.company
        row = {
            "id": company["id"],
            "displayName": company["displayName"],
            "currencyCode": self.store.lcy_code,
            "lastModifiedDateTime": company["systemModifiedAt"],
        }
        body = {"@odata.context": self._context(params, "companyInformation"), "value": [row]}
        return Response.json(200, body, content_type=BC_CONTENT_TYPE)

    # -- routes: customers, items, invoices -----------------------------------------------------

    def _list_handler(self, set_name: str, entity: EntityType) -> Any:
        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            return self._collection(request, params, entity, self._rows(set_name, entity), set_name)

        return handler

    def _get_handler(self, set_name: str, entity: EntityType) -> Any:
        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            key = self._key(request, params["id"])
            with self.store.lock:
                record = self._records(set_name).get(key)
            if record is None:
                caption = "Sales Invoice" if entity is SALES_INVOICE else entity.table
                return self.error(
                    request,
                    404,
                    "BadRequest_NotFound",
                    f"The {caption} does not exist. Identification fields and values: Id='{params['id']}'",
                )
            render = self._renderer(entity, record)
            return self._entity(request, params, entity, render, set_name)

        return handler

    def _create_handler(self, set_name: str, entity: EntityType) -> Any:
        create = {
            "customers": self.store.create_customer,
            "items": self.store.create_item,
            "salesInvoices": self.store.create_invoice,
        }[set_name]

        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            self._query(request, ENTITY_OPTIONS)
            body = self._json_body(request)
            try:
                created = create(body)
            except BcError as exc:
                return self._bc_error(request, exc)
            record_id = created["id"]
            with self.store.lock:
                record = self._records(set_name)[record_id]
            render = self._renderer(entity, record) if entity is SALES_INVOICE else (lambda expand: created)
            location = f"{self._root(params)}/companies({self.store.id})/{set_name}({record_id})"
            return self._entity(request, params, entity, render, set_name, status=201, location=location)

        return handler

    def _update_handler(self, set_name: str, entity: EntityType) -> Any:
        update = {
            "customers": self.store.update_customer,
            "items": self.store.update_item,
            "salesInvoices": self.store.update_invoice,
        }[set_name]

        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            key = self._key(request, params["id"])
            body = self._json_body(request)
            try:
                updated = update(key, body, request.header("if-match"))
            except BcError as exc:
                return self._bc_error(request, exc)
            if entity is SALES_INVOICE:
                with self.store.lock:
                    record = self.store.invoices[key]
                render = self._renderer(entity, record)
            else:
                render = lambda expand: updated  # noqa: E731
            return self._entity(request, params, entity, render, set_name)

        return handler

    def _delete_handler(self, set_name: str, entity: EntityType) -> Any:
        caption = {"customers": "Customer", "items": "Item", "salesInvoices": "Sales Invoice"}[set_name]

        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            key = self._key(request, params["id"])
            try:
                self.store.delete(self._records(set_name), key, caption, request.header("if-match"))
            except BcError as exc:
                return self._bc_error(request, exc)
            return Response.empty(204)

        return handler

    # -- routes: invoice lines and actions ------------------------------------------------------

    def _invoice_lines_rows(self, request: Request, params: dict[str, str]) -> Rows:
        key = self._key(request, params["id"])
        store = self.store
        with store.lock:
            record = store.invoices.get(key)
            if record is None:
                raise HttpError(
                    self.error(
                        request,
                        404,
                        "BadRequest_NotFound",
                        "The Sales Invoice does not exist. Identification fields and values: "
                        f"Id='{params['id']}'",
                    )
                )
            return [(line, lambda expand, line=line: store.render_line(line)) for line in record.lines]

    def _list_lines(self, request: Request, params: dict[str, str]) -> Response:
        self._check_company(request, params)
        rows = self._invoice_lines_rows(request, params)
        tail = f"salesInvoices({self._key(request, params['id'])})/salesInvoiceLines"
        return self._collection(request, params, SALES_INVOICE_LINE, rows, tail)

    def _create_line(self, request: Request, params: dict[str, str]) -> Response:
        self._check_company(request, params)
        key = self._key(request, params["id"])
        body = self._json_body(request)
        try:
            line = self.store.add_line(key, body, request.header("if-match"))
        except BcError as exc:
            return self._bc_error(request, exc)
        tail = f"salesInvoices({key})/salesInvoiceLines"
        return self._entity(request, params, SALES_INVOICE_LINE, lambda expand: line, tail, status=201)

    def _get_line(self, request: Request, params: dict[str, str]) -> Response:
        self._check_company(request, params)
        key = self._key(request, params["id"])
        line_key = self._key(request, params["lineId"])
        try:
            line = self.store.line(key, line_key)
        except BcError as exc:
            return self._bc_error(request, exc)
        tail = f"salesInvoices({key})/salesInvoiceLines"
        return self._entity(request, params, SALES_INVOICE_LINE, lambda expand: line, tail)

    def _delete_line(self, request: Request, params: dict[str, str]) -> Response:
        self._check_company(request, params)
        key = self._key(request, params["id"])
        line_key = self._key(request, params["lineId"])
        try:
            self.store.delete_line(key, line_key, request.header("if-match"))
        except BcError as exc:
            return self._bc_error(request, exc)
        return Response.empty(204)

    def _action(self, run: Callable[[str], Any]) -> Any:
        """A bound action (`Microsoft.NAV.post`, `Microsoft.NAV.cancel`): 204; the API id stays the same."""

        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            key = self._key(request, params["id"])
            try:
                run(key)
            except BcError as exc:
                return self._bc_error(request, exc)
            return Response.empty(204)

        return handler

    # -- routes: setup tables -------------------------------------------------------------------

    def _reference_list(self, set_name: str) -> Any:
        entity = REFERENCE_TYPES[set_name]

        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            store = self.store
            with store.lock:
                rows_data = sorted(store.references[set_name].values(), key=lambda row: str(row["code"]))
                rows: Rows = [
                    (row, lambda expand, row=row: store.render_reference(set_name, row)) for row in rows_data
                ]
            return self._collection(request, params, entity, rows, set_name)

        return handler

    def _reference_get(self, set_name: str) -> Any:
        entity = REFERENCE_TYPES[set_name]

        def handler(request: Request, params: dict[str, str]) -> Response:
            self._check_company(request, params)
            key = self._key(request, params["id"])
            store = self.store
            with store.lock:
                row = store.references[set_name].get(key)
                if row is None:
                    return self.error(
                        request,
                        404,
                        "BadRequest_NotFound",
                        f"The {entity.table} does not exist. Identification fields and values: "
                        f"Id='{params['id']}'",
                    )
                rendered = store.render_reference(set_name, row)
            return self._entity(request, params, entity, lambda expand: rendered, set_name)

        return handler


def _guid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value.strip().strip("'{}")))
    except ValueError:
        return None
