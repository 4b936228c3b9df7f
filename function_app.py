"""The Functions app: one FunctionApp, every trigger family registered from its blueprint."""

import azure.functions as func

from functions.http_triggers import bp as http_api_bp
from functions.portal import bp as portal_bp
from functions.portal_api import bp as portal_api_bp
from functions.queue_triggers import bp as invoicing_bp
from functions.timer_triggers import bp as sync_bp

# Callers are authenticated by App Service Authentication in front of the app, and each HTTP
# function checks the caller's app roles itself: no function keys.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api_bp)
app.register_functions(invoicing_bp)
app.register_functions(sync_bp)
app.register_functions(portal_api_bp)
app.register_functions(portal_bp)
