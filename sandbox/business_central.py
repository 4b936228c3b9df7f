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
from urllib.parse import quote, urlencode

from sandbox.bc_model import CompanyStore, Record
from sandbox.bc_schema import (
    COMPANY,
    CUSTOMER,
    ITEM,
    REFERENCE_TYPES,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    BcError,
    EntityType,
)
from sandbox.entra import BC_RESOURCE, Directory, Principal, TokenError
from sandbox.faults import Throttled
from sandbox.httpcore import (
    HttpError,
    Request,
    Response,
    RouteMatch,
    Router,
    encode_skiptoken,
    offset_from_skiptoken,
)
from sandbox.odata import (
    ODataError,
    compile_filter,
    parse_maxpagesize,
    parse_non_negative,
    parse_orderby,
    parse_select,
)
from sandbox.odata import sort_entities as odata_sort

BC_CONTENT_TYPE = (
    "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
)
_COLLECTION_OPTIONS = {
    "$filter",
    "$orderby",
    "$select",
    "$top",
    "$skip",
    "$skiptoken",
    "$expand",
    "$count",
    "$schemaversion",
}
_ENTITY_OPTIONS = {"$select", "$expand", "$schemaversion"}
DEFAULT_503_RETRY_AFTER = 1
"""Business Central's 503 carries `Retry-After`; the value it sends is not documented."""

Rows = list[tuple[dict[str, Any], Callable[[bool], dict[str, Any]]]]
"""(raw values to filter and sort on, renderer taking `expand_lines`) per entity."""


class BusinessCentralService:
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

    # -- pipeline hooks -------------------------------------------------------------------------

    def authenticate(self, request: Request, match: RouteMatch | None) -> Principal:
        try:
            principal = self.directory.validate(request.header("authorization"), BC_RESOURCE)
        except TokenError:
            raise HttpError(self._unauthorized(request)) from None
        tenant = match.params.get("tenant") if match else None
        if tenant is not None and tenant.lower() != principal.tenant_id.lower():
            raise HttpError(self._unauthorized(request))
        # An app missing from the "Microsoft Entra Applications" page, or whose token carries no
        # API.ReadWrite.All (no admin consent), is rejected like bad credentials (FIDELITY.md).
        app = self.directory.app(principal.client_id)
        if (app is not None and not app.bc_registered) or "API.ReadWrite.All" not in principal.roles:
            raise HttpError(self._unauthorized(request))
        return principal

    def mailbox(self, match: RouteMatch) -> str | None:
        return None

    def _unauthorized(self, request: Request) -> Response:
        return self.error(
            request,
            401,
            "Authentication_InvalidCredentials",
            "The server has rejected the client credentials.",
            {
                "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/'
                f'{self.directory.tenant_id}/oauth2/authorize", resource_id="{BC_RESOURCE}"'
            },
        )

    def error(
        self, request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        body = {"error": {"code": code, "message": f"{message}  CorrelationId:  {request.request_id}."}}
        return Response.json(status, body, headers, content_type=BC_CONTENT_TYPE)

    def decorate(self, request: Request, response: Response) -> None:
        response.headers.setdefault("request-id", request.request_id)
        response.headers.setdefault("OData-Version", "4.0")

    def not_found(self, request: Request) -> Response:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1] or "/"
        return self.error(
            request, 404, "BadRequest_NotFound", f"Resource not found for the segment '{segment}'."
        )

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1].split("(", 1)[0]
        return self.error(
            request,
            405,
            "BadRequest_MethodNotAllowed",
            f"'{request.method}' requests for '{segment}' of EdmType 'Entity' are not allowed within "
            "Dynamics 365 "
            "Business Central OData web services.",
        )

    def fault(self, request: Request, status: int, retry_after: int | None) -> Response:
        if retry_after is None and status == 503:
            retry_after = DEFAULT_503_RETRY_AFTER
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        code, message = {
            429: ("Application_TooManyRequests", "Too many requests reached."),
            500: ("Internal_ServerError", "An unexpected error occurred."),
            502: ("Internal_BadGateway", "The gateway received an invalid response."),
            503: ("Internal_ServiceUnavailable", "The service is temporarily unavailable."),
            504: ("Internal_GatewayTimeout", "The request timed out at the gateway."),
        }[status]
        return self.error(request, status, code, message, headers)

    def throttled(self, request: Request, exc: Throttled) -> Response:
        retry_after = exc.retry_after
        if retry_after is None and exc.status == 503:
            retry_after = DEFAULT_503_RETRY_AFTER
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        code = "Application_TooManyRequests" if exc.status == 429 else "Internal_ServiceUnavailable"
        return self.error(request, exc.status, code, exc.message, headers)

    def internal_error(self, request: Request) -> Response:
        return self.error(request, 500, "Internal_ServerError", "An unexpected error occurred.")

    # -- helpers --------------------------------------------------------------------------------

    def _root(self, params: dict[str, str]) -> str:
        return f"{self.base_url}/{params['tenant']}/{params['environment']}/api/v2.0"

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

    def _context(self, params: dict[str, str], tail: str) -> str:
        return f"{self._root(params)}/$metadata#companies({self.store.id})/{tail}"

    def _bc_error(self, request: Request, exc: BcError) -> Response:
        return self.error(request, exc.status, exc.code, exc.message)

    def _json_body(self, request: Request) -> Any:
        try:
            return request.json()
        except (ValueError, UnicodeDecodeError):
            raise HttpError(self.error(request, 400, "BadRequest", "Invalid Request Body.")) from None

    def _query(self, request: Request, allowed: set[str]) -> dict[str, str]:
        query = request.query_dict()
        for key in query:
            if key.startswith("$") and key not in allowed:
                raise HttpError(
                    self.error(request, 400, "BadRequest", f"The query parameter '{key}' is not supported.")
                )
        return query

    def _expand(self, request: Request, entity: EntityType, query: dict[str, str]) -> bool:
        expand = query.get("$expand")
        if not expand:
            return False
        names = [name.strip() for name in expand.split(",") if name.strip()]
        for name in names:
            if entity is not SALES_INVOICE or name != "salesInvoiceLines":
                raise HttpError(
                    self.error(
                        request,
                        400,
                        "BadRequest",
                        f"Could not find a property named '{name}' on type '{entity.name}'.",
                    )
                )
        return bool(names)

    def _collection(
        self,
        request: Request,
        params: dict[str, str],
        entity: EntityType,
        rows: Rows,
        context_tail: str,
    ) -> Response:
        query = self._query(request, _COLLECTION_OPTIONS)
        try:
            expand = self._expand(request, entity, query)
            if "$filter" in query:
                predicate = compile_filter(query["$filter"], entity.schema, entity.name)
                rows = [row for row in rows if predicate(row[0])]
            if "$orderby" in query:
                order = parse_orderby(query["$orderby"], entity.schema, entity.name)
                index = {id(values): (values, render) for values, render in rows}
                ordered = odata_sort([values for values, _ in rows], order, entity.schema)
                rows = [index[id(values)] for values in ordered]
            select = (
                parse_select(query["$select"], entity.schema, entity.name) if "$select" in query else None
            )
            skip = parse_non_negative(query["$skip"], "$skip") if "$skip" in query else 0
            top = parse_non_negative(query["$top"], "$top") if "$top" in query else None
        except ODataError as exc:
            return self.error(request, 400, "BadRequest", f"Invalid filter or query option: {exc}")
        total = len(rows)
        rows = rows[skip:]
        if top is not None:
            rows = rows[:top]
        offset = 0
        if "$skiptoken" in query:
            decoded = offset_from_skiptoken(query["$skiptoken"])
            if decoded is None:
                return self.error(request, 400, "BadRequest", "The $skiptoken value is not valid.")
            offset = decoded
        server_max = max(1, int(self._max_page_size()))
        preferred = parse_maxpagesize(request.header("prefer"))
        size = min(preferred, server_max) if preferred else server_max
        page = rows[offset : offset + size]
        headers: dict[str, str] = {}
        if preferred:
            headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        tail = context_tail + (f"({','.join(select)})" if select else "")
        body: dict[str, Any] = {"@odata.context": self._context(params, tail)}
        if query.get("$count", "").lower() == "true":
            body["@odata.count"] = total
        body["value"] = [_project(render(expand), select, expand) for _, render in page]
        if offset + size < len(rows):
            body["@odata.nextLink"] = self._next_link(request, encode_skiptoken({"o": offset + size}))
        return Response.json(200, body, headers, content_type=BC_CONTENT_TYPE)

    def _entity(
        self,
        request: Request,
        params: dict[str, str],
        entity: EntityType,
        render: Callable[[bool], dict[str, Any]],
        context_tail: str,
        status: int = 200,
        location: str | None = None,
    ) -> Response:
        query = self._query(request, _ENTITY_OPTIONS)
        try:
            expand = self._expand(request, entity, query)
            select = (
                parse_select(query["$select"], entity.schema, entity.name) if "$select" in query else None
            )
        except ODataError as exc:
            return self.error(request, 400, "BadRequest", f"Invalid query option: {exc}")
        data = render(expand)
        body: dict[str, Any] = {"@odata.context": self._context(params, context_tail + "/$entity")}
        body.update(_project(data, select, expand))
        headers = {"ETag": data["@odata.etag"]} if "@odata.etag" in data else {}
        if location:
            headers["Location"] = location
        return Response.json(status, body, headers, content_type=BC_CONTENT_TYPE)

    def _next_link(self, request: Request, token: str) -> str:
        pairs = [(k, v) for k, v in request.query if k != "$skiptoken"]
        pairs.append(("$skiptoken", token))
        return f"{request.base_url}{request.path}?{urlencode(pairs, quote_via=quote, safe=':$')}"

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
            self._query(request, _ENTITY_OPTIONS)
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


def _project(data: dict[str, Any], select: list[str] | None, expand: bool) -> dict[str, Any]:
    if not select:
        return data
    keep = {"@odata.etag", *select}
    if expand:
        keep.add("salesInvoiceLines")
    return {k: v for k, v in data.items() if k in keep}


def _guid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value.strip().strip("'{}")))
    except ValueError:
        return None
