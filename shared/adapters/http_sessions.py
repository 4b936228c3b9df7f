"""HTTP sessions whose environment is read once, not on every request.

`requests` with `trust_env` on (its default, and the Azure SDK's) looks up proxies, `NO_PROXY` and
the CA bundle in `os.environ` for every request it sends: a walk over the whole environment, twice.
Profiled, that was a fifth of the CPU an invoice costs (`docs/invoicing.md`). The environment does
not change while the app runs, so it is read here once, when a session or client is built:

- no proxy configured (the usual case, in Azure and locally): environment lookups are switched off,
  and the CA bundle the environment names (`REQUESTS_CA_BUNDLE`, else `CURL_CA_BUNDLE`, as
  `requests` would pick it) is set on the session directly, so TLS trust is exactly as before;
- a proxy configured (`HTTPS_PROXY` and friends): nothing changes; `requests` keeps matching each
  URL against `NO_PROXY` itself, which is worth its cost when it matters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import requests
from azure.core.pipeline import Pipeline, PipelineContext, PipelineRequest, PipelineResponse
from requests.adapters import HTTPAdapter

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # requests' order of precedence


def _proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies `requests` would find in `environ` (`<scheme>_proxy`, any case; `no_proxy` aside),
    as `urllib.request.getproxies_environment` reads them from `os.environ`."""
    found: dict[str, str] = {}
    for name, value in environ.items():
        lowered = name.lower()
        if value and lowered.endswith("_proxy") and lowered != "no_proxy":
            found[lowered[: -len("_proxy")]] = value
    return found


def ca_bundle(environ: Mapping[str, str]) -> str | None:
    return next((environ[name] for name in CA_BUNDLE_VARIABLES if environ.get(name)), None)


def reads_environment_per_request(environ: Mapping[str, str] | None = None) -> bool:
    """True when a proxy is configured, so each request must still consult the environment."""
    return bool(_proxies(os.environ if environ is None else environ))


def pooled_session(pool_maxsize: int, environ: Mapping[str, str] | None = None) -> requests.Session:
    """A session with a pool of `pool_maxsize` connections per host, its own retries off (callers
    retry), and the environment applied once (see the module docstring)."""
    environ = os.environ if environ is None else environ
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if not reads_environment_per_request(environ):
        session.trust_env = False
        bundle = ca_bundle(environ)
        if bundle:
            session.verify = bundle
    return session


def sdk_transport_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword options for the Azure SDK clients' transport with the same rule."""
    environ = os.environ if environ is None else environ
    if reads_environment_per_request(environ):
        return {}
    options: dict[str, Any] = {"use_env_settings": False}
    bundle = ca_bundle(environ)
    if bundle:
        options["connection_verify"] = bundle
    return options


class SerialMultipartPipeline(Pipeline):  # type: ignore[type-arg]
    """azure-core's pipeline, preparing the parts of a multipart request in the calling thread.

    A table transaction is a multipart request (batch > changeset > operations). Before sending one,
    azure-core's `Pipeline._prepare_multipart_mixed_request` applies the per-part policies (for
    tables only `StorageHeadersPolicy`: a date and a request id per operation, microseconds of work)
    on a `ThreadPoolExecutor` it creates and shuts down for every level of every call, and the
    answer's `parts()` (`_parts_helper`) starts one more to apply their `on_response` (a no-op for
    these policies): three pools and their threads per transaction. Profiled, that was a fifth of a
    transaction's CPU (`docs/invoicing.md`). The same policies run here one part after another, in
    the same order of nesting; everything else is azure-core's own path."""

    def run(self, request: Any, **kwargs: Any) -> Any:
        response = super().run(request, **kwargs)
        if getattr(request, "multipart_mixed_info", None):
            answer = response.http_response
            answer.__class__ = _with_serial_parts(type(answer))
        return response

    @staticmethod
    def _prepare_multipart_mixed_request(request: Any) -> None:
        info = getattr(request, "multipart_mixed_info", None)
        if not info:
            return
        parts, policies, options = info[0], info[1], info[3]
        for part in parts:
            SerialMultipartPipeline._prepare_multipart_mixed_request(part)
            pipeline_request: PipelineRequest[Any] = PipelineRequest(part, PipelineContext(None, **options))
            for policy in policies:
                policy.on_request(pipeline_request)


_SERIAL_PARTS: dict[type, type] = {}


def _with_serial_parts(response_type: type) -> type:
    """The response type whose `parts()` runs in this thread. A subclass, not an attribute set on
    the response: a closure holding the response would make a reference cycle that keeps each
    transaction's body alive until the garbage collector runs."""
    serial = _SERIAL_PARTS.get(response_type)
    if serial is None:
        serial = type(f"Serial{response_type.__name__}", (response_type,), {"parts": _parts_in_this_thread})
        _SERIAL_PARTS[response_type] = serial
    return serial


def _parts_in_this_thread(response: Any) -> list[Any]:
    """azure-core's `_parts_helper` (the answer of a multipart request, part by part), its
    per-part `on_response` run in this thread."""
    if not response.content_type or not response.content_type.startswith("multipart/mixed"):
        raise ValueError("You can't get parts if the response is not multipart/mixed")
    parts = list(response._get_raw_parts())
    policies = response.request.multipart_mixed_info[1]
    for part in parts:
        context = PipelineContext(None)
        pipeline_request: PipelineRequest[Any] = PipelineRequest(part.request, context)
        for policy in policies:
            policy.on_response(pipeline_request, PipelineResponse(part.request, part, context=context))
    return parts


def prepare_parts_serially(table_client: Any) -> Any:
    """The table client with its pipeline's multipart preparation in the calling thread (above)."""
    pipeline = getattr(getattr(getattr(table_client, "_client", None), "_client", None), "_pipeline", None)
    if type(pipeline) is Pipeline:
        pipeline.__class__ = SerialMultipartPipeline
    return table_client
