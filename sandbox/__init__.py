"""Local stand-ins for Microsoft Entra ID, Graph Bookings and Business Central API v2.0.

Run `python -m sandbox`, or in-process: `start_sandbox(port=0, ...)` returns a `SandboxHandle`.
"""

from sandbox.admin import SandboxAdmin, SandboxAdminError
from sandbox.core.clock import Clock, ManualClock, SystemClock
from sandbox.server import SandboxHandle, running_sandbox, start_sandbox

__all__ = [
    "Clock",
    "ManualClock",
    "SandboxAdmin",
    "SandboxAdminError",
    "SandboxHandle",
    "SystemClock",
    "running_sandbox",
    "start_sandbox",
]
