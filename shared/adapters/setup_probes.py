"""The setup check's reads against Entra, Graph, Business Central and storage (`ports.SetupProbes`).

Each probe is one read, sent once (no retries: the check reports what it met, and is asked again
by a person, not a loop), with short timeouts. Business Central reads pass the same budget as
invoicing (the client is built on it). Answers are reduced to status, code and message; tokens and
secrets never leave this module (a token's `roles` claim is read, not the token).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from shared.adapters.business_central import BusinessCentralClient
from shared.adapters.graph_bookings import GraphBookingsClient, GraphError
from shared.adapters.http_retry import RetryPolicy
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.reconcile_state import ReconcileStateStore
from shared.adapters.sync_state import SyncStateStore
from shared.adapters.token_provider import TokenError, TokenProvider
from shared.domain.errors import BusinessCentralError
from shared.domain.setup_checks import RunRecord, ServiceAnswer, TokenAnswer

ONE_ATTEMPT = RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0)
PROBE_TIMEOUT = (5.0, 15.0)


def token_roles(token: str) -> tuple[str, ...]:
    """The `roles` claim of a JWT access token (read without verifying: the issuer is Entra)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ()
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return tuple(str(role) for role in roles) if isinstance(roles, list) else ()


def _bc_answer(call: Callable[[], dict[str, Any]]) -> ServiceAnswer:
    try:
        return ServiceAnswer(200, record=call())
    except BusinessCentralError as exc:
        return ServiceAnswer(exc.status, exc.code or "", str(exc))


class SetupProbes:
    def __init__(
        self,
        tokens: TokenProvider,
        graph: GraphBookingsClient,
        business_central: BusinessCentralClient,
        queue: Callable[[], InvoiceQueue],
        sync_state: Callable[[], SyncStateStore],
        reconcile_state: Callable[[], ReconcileStateStore],
        probe_storage: Callable[[], None],
        company_id: str,
    ) -> None:
        self._tokens = tokens
        self._graph = graph
        self._bc = business_central
        self._queue = queue
        self._sync_state = sync_state
        self._reconcile_state = reconcile_state
        self._probe_storage = probe_storage
        self._company_id = company_id

    def probe_storage(self) -> None:
        self._probe_storage()

    def token(self, resource: str) -> TokenAnswer:
        get = self._tokens.graph_token if resource == "graph" else self._tokens.business_central_token
        try:
            return TokenAnswer(roles=token_roles(get()))
        except TokenError as exc:
            description = str(exc).split(": ", 2)[-1]
            return TokenAnswer(error=exc.error, description=description, transient=exc.transient)

    def graph_business(self, business_id: str) -> ServiceAnswer:
        try:
            return ServiceAnswer(200, record=self._graph.get_business(business_id))
        except GraphError as exc:
            return ServiceAnswer(exc.status, exc.code, str(exc))

    def bc_company(self) -> ServiceAnswer:
        return _bc_answer(self._bc.get_company)

    def bc_companies(self) -> ServiceAnswer:
        return _bc_answer(self._bc.list_companies)

    def bc_record(self, collection: str, number: str) -> ServiceAnswer:
        try:
            return ServiceAnswer(200, record=self._bc.find_by_number(collection, number))
        except BusinessCentralError as exc:
            return ServiceAnswer(exc.status, exc.code or "", str(exc))

    def poison_depth(self) -> int:
        return self._queue().poison_depth()

    def last_syncs(self, business_ids: Sequence[str]) -> list[RunRecord]:
        store = self._sync_state()
        records = []
        for business_id in business_ids:
            status = store.get(business_id)
            records.append(
                RunRecord(status.last_run_at, status.last_outcome, status.last_error or "", business_id)
            )
        return records

    def last_reconcile(self) -> RunRecord | None:
        return self._reconcile_state().last_run(self._company_id)
