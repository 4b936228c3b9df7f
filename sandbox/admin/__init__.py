"""The sandbox's own admin API (under `/_sandbox`, a path no real API uses) and its typed client.

`routes` serves it from the running sandbox's state; `client` calls it over HTTPS.
"""

from sandbox.admin.client import SandboxAdmin, SandboxAdminError
from sandbox.admin.routes import ADMIN_PREFIX, STATE_SECTIONS, AdminApi, SandboxState

__all__ = ["ADMIN_PREFIX", "STATE_SECTIONS", "AdminApi", "SandboxAdmin", "SandboxAdminError", "SandboxState"]
