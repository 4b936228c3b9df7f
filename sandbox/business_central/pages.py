"""OData pages of the Business Central API: a collection (filter, order, select, top/skip,
server-driven paging with `@odata.nextLink`) or a single entity, in the shape the API answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from sandbox.business_central.company import CompanyStore
from sandbox.business_central.protocol import BC_CONTENT_TYPE, BusinessCentralProtocol
from sandbox.business_central.schema import (
    EntityType,
)
from sandbox.core.httpcore import (
    Request,
    Response,
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

COLLECTION_OPTIONS = {
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
ENTITY_OPTIONS = {"$select", "$expand", "$schemaversion"}


Rows = list[tuple[dict[str, Any], Callable[[bool], dict[str, Any]]]]
"""(raw values to filter and sort on, renderer taking `expand_lines`) per entity."""


class ODataPages(BusinessCentralProtocol):
    """Collections and entities of one company's API pages, served from `base_url`."""

    store: CompanyStore
    base_url: str
    _max_page_size: Callable[[], int]

    def _root(self, params: dict[str, str]) -> str:
        return f"{self.base_url}/{params['tenant']}/{params['environment']}/api/v2.0"

    def _context(self, params: dict[str, str], tail: str) -> str:
        return f"{self._root(params)}/$metadata#companies({self.store.id})/{tail}"

    def _collection(
        self,
        request: Request,
        params: dict[str, str],
        entity: EntityType,
        rows: Rows,
        context_tail: str,
    ) -> Response:
        query = self._query(request, COLLECTION_OPTIONS)
        try:
            expand = self._expand(request, entity, query)
            rows = _filtered_and_ordered(rows, query, entity)
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
        body["value"] = [project(render(expand), select, expand) for _, render in page]
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
        query = self._query(request, ENTITY_OPTIONS)
        try:
            expand = self._expand(request, entity, query)
            select = (
                parse_select(query["$select"], entity.schema, entity.name) if "$select" in query else None
            )
        except ODataError as exc:
            return self.error(request, 400, "BadRequest", f"Invalid query option: {exc}")
        data = render(expand)
        body: dict[str, Any] = {"@odata.context": self._context(params, context_tail + "/$entity")}
        body.update(project(data, select, expand))
        headers = {"ETag": data["@odata.etag"]} if "@odata.etag" in data else {}
        if location:
            headers["Location"] = location
        return Response.json(status, body, headers, content_type=BC_CONTENT_TYPE)

    def _next_link(self, request: Request, token: str) -> str:
        pairs = [(k, v) for k, v in request.query if k != "$skiptoken"]
        pairs.append(("$skiptoken", token))
        return f"{request.base_url}{request.path}?{urlencode(pairs, quote_via=quote, safe=':$')}"


def _filtered_and_ordered(rows: Rows, query: dict[str, str], entity: EntityType) -> Rows:
    """`$filter` and `$orderby` applied to the rows (raises `ODataError`)."""
    if "$filter" in query:
        predicate = compile_filter(query["$filter"], entity.schema, entity.name)
        rows = [row for row in rows if predicate(row[0])]
    if "$orderby" in query:
        order = parse_orderby(query["$orderby"], entity.schema, entity.name)
        index = {id(values): (values, render) for values, render in rows}
        ordered = odata_sort([values for values, _ in rows], order, entity.schema)
        rows = [index[id(values)] for values in ordered]
    return rows


def project(data: dict[str, Any], select: list[str] | None, expand: bool) -> dict[str, Any]:
    if not select:
        return data
    keep = {"@odata.etag", *select}
    if expand:
        keep.add("salesInvoiceLines")
    return {k: v for k, v in data.items() if k in keep}
