"""How the Business Central API answers: its error body, 401 for a token it refuses, injected
faults and throttling, and the checks of a request's body and query options every page shares.
"""

from __future__ import annotations

from typing import Any

from sandbox.business_central.schema import (
    SALES_INVOICE,
    BcError,
    EntityType,
)
from sandbox.core.faults import Throttled
from sandbox.core.httpcore import (
    HttpError,
    Request,
    Response,
    RouteMatch,
)
from sandbox.directory import BC_RESOURCE, Directory, Principal, TokenError

BC_CONTENT_TYPE = (
    "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
)

DEFAULT_503_RETRY_AFTER = 1
"""Business Central's 503 carries `Retry-After`; the value it sends is not documented."""


class BusinessCentralProtocol:
    """The answers every Business Central route shares; `directory` validates tokens."""

    directory: Directory

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
