"""The sandbox server: one HTTPS origin that serves Entra ID, Graph and Business Central.

`app` holds the state and the request pipeline, `sockets` the TLS HTTP server, `start` starts it
all and returns a `SandboxHandle`.
"""

from sandbox.server.app import BC_PREFIX, ENTRA_PREFIX, GRAPH_PREFIX, SandboxApp
from sandbox.server.start import SandboxHandle, build_settings, running_sandbox, start_sandbox

__all__ = [
    "BC_PREFIX",
    "ENTRA_PREFIX",
    "GRAPH_PREFIX",
    "SandboxApp",
    "SandboxHandle",
    "build_settings",
    "running_sandbox",
    "start_sandbox",
]
