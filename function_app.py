"""The Functions app: one FunctionApp, every trigger family registered from its blueprint."""

import azure.functions as func

from functions.http_triggers import bp as http_api_bp
from functions.queue_triggers import bp as invoicing_bp
from functions.timer_triggers import bp as sync_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api_bp)
app.register_functions(invoicing_bp)
app.register_functions(sync_bp)
