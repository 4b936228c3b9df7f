"""The Functions app: one FunctionApp, every trigger family registered from its blueprint."""

import azure.functions as func

from functions.health import bp as health_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health_bp)
