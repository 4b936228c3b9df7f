"""Function discovery through the library's own metadata, as the Python worker does it.

`FunctionApp.get_functions()` may be called only once per app (a second call raises "does not have
a unique function name"), so the result is kept per app object.
"""

from __future__ import annotations

import importlib
import inspect
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devhost.config import HostConfigError, resolve_setting_references

_DISCOVERED: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the app: its name, trigger and the Python callable behind it."""

    name: str
    trigger_type: str  # httpTrigger | timerTrigger | queueTrigger | ...
    trigger: Mapping[str, Any]  # the trigger binding, `%SETTING%` references resolved
    user_function: Callable[..., Any]
    trigger_arg: str  # parameter name that receives the trigger input
    wants_context: bool
    is_async: bool
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def short_trigger(self) -> str:
        return self.trigger_type.removesuffix("Trigger")


def _plain(value: Any) -> Any:
    """Binding metadata uses enums (`HttpMethod.GET`, `AuthLevel.FUNCTION`); keep their values."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def load_app(module_name: str) -> Any:
    """Import the module that holds the `FunctionApp` and return the app object."""
    import azure.functions as func

    module = importlib.import_module(module_name)
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise HostConfigError(f"{module_name} must define exactly one func.FunctionApp, found {len(apps)}")
    return apps[0]


def discover_functions(app: Any, settings: Mapping[str, str]) -> list[FunctionSpec]:
    """Read every function's trigger from the app's metadata and resolve `%SETTING%` references."""
    if app not in _DISCOVERED:
        _DISCOVERED[app] = list(app.get_functions())
    specs = []
    for function in _DISCOVERED[app]:
        name = function.get_function_name()
        trigger_repr = {k: _plain(v) for k, v in function.get_trigger().get_dict_repr().items()}
        resolved: dict[str, Any] = {}
        for key, value in trigger_repr.items():
            where = f"function {name}, binding property {key}"
            resolved[key] = (
                resolve_setting_references(value, settings, where) if isinstance(value, str) else value
            )
        user_function = function.get_user_function()
        parameters = inspect.signature(user_function).parameters
        specs.append(
            FunctionSpec(
                name=name,
                trigger_type=str(resolved["type"]),
                trigger=resolved,
                user_function=user_function,
                trigger_arg=str(resolved["name"]),
                wants_context="context" in parameters,
                is_async=inspect.iscoroutinefunction(user_function),
            )
        )
    return specs
