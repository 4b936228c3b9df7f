"""The Bicep templates under infra/, parsed the way checkov parses them (pycep), for assertions.

pycep turns a template into JSON: identifiers and string literals both come out as plain strings
(`keyVaultReferenceIdentity: identityId` gives "identityId"), function calls and property accessors
as nested dicts. `Resource` unwraps conditional (`= if (...)`) and loop (`[for ...]`) resources so
a test reads `properties` the same way for every resource.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@dataclass(frozen=True)
class Resource:
    """One resource declaration: its symbolic name, type and (unwrapped) body."""

    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]
    condition: Any = None
    loop: dict[str, Any] | None = None

    @property
    def properties(self) -> dict[str, Any]:
        return self.body.get("properties") or {}

    def get(self, path: str) -> Any:
        """A value by slash path (`properties/siteConfig/minTlsVersion`); None when absent."""
        node: Any = self.body
        for part in path.split("/"):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


@dataclass(frozen=True)
class Template:
    path: Path
    text: str
    doc: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.relative_to(INFRA).as_posix()

    @property
    def parameters(self) -> dict[str, Any]:
        return self.doc.get("parameters") or {}

    @property
    def variables(self) -> dict[str, Any]:
        return {name: var.get("value") for name, var in (self.doc.get("variables") or {}).items()}

    @property
    def outputs(self) -> dict[str, Any]:
        return self.doc.get("outputs") or {}

    @property
    def modules(self) -> dict[str, Any]:
        return self.doc.get("modules") or {}

    @property
    def resources(self) -> list[Resource]:
        found = []
        for symbol, raw in (self.doc.get("resources") or {}).items():
            body = raw.get("config") or {}
            condition = None
            loop = None
            if "loop_type" in body:
                loop = body["loop_type"]
                condition = body.get("condition")
                body = body.get("config") or {}
            elif "condition" in body and "config" in body:
                condition = body["condition"]
                body = body["config"]
            found.append(
                Resource(symbol, raw["type"], raw["api_version"], raw["existing"], body, condition, loop)
            )
        return found

    def of_type(self, resource_type: str, *, existing: bool = False) -> list[Resource]:
        return [r for r in self.resources if r.type == resource_type and r.existing == existing]

    def one(self, resource_type: str) -> Resource:
        matches = self.of_type(resource_type)
        assert len(matches) == 1, f"{self.name}: expected one {resource_type}, found {len(matches)}"
        return matches[0]

    def module_params(self, symbol: str) -> dict[str, Any]:
        module = self.modules[symbol]
        body = module.get("config") or {}
        if "condition" in body and "config" in body:
            body = body["config"]
        return body.get("params") or {}

    def module_path(self, symbol: str) -> str:
        return self.modules[symbol]["detail"]["path"]

    def has_decorator(self, parameter: str, decorator: str) -> bool:
        return any(d.get("type") == decorator for d in self.parameters[parameter].get("decorators", []))


@cache
def _parser() -> BicepParser:
    """One parser: building pycep's grammar is most of the cost of parsing a template."""
    return BicepParser()


@cache
def load(relative: str) -> Template:
    path = INFRA / relative
    text = path.read_text(encoding="utf-8")
    return Template(path, text, _parser().parse(text=text))


def all_templates() -> list[Template]:
    return [load(p.relative_to(INFRA).as_posix()) for p in sorted(INFRA.rglob("*.bicep"))]


def name_value_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """App settings written as [{name, value}] into a dict (a repeated name is an error)."""
    result: dict[str, Any] = {}
    for item in items:
        assert item["name"] not in result, f"app setting {item['name']} is set twice"
        result[item["name"]] = item["value"]
    return result


def function_args(node: Any, function: str) -> list[Any]:
    """The arguments of a call to `function` (pycep: {"function": {"type", "parameters"}})."""
    assert isinstance(node, dict) and node.get("function", {}).get("type") == function, node
    return list(node["function"]["parameters"].values())


def accessor(node: Any) -> str:
    """`a.b.c` from pycep's nested property accessors, to compare with the source text."""
    if isinstance(node, str):
        return node
    operands = node["operator"]["operands"]
    return f"{accessor(operands['operand_1'])}.{accessor(operands['operand_2'])}"


# --- What the code says, so the templates cannot drift from it -------------------------------------


def _python_sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def code_string_constants(pattern: str) -> dict[str, str]:
    """Module-level `NAME = "value"` constants in shared/ whose NAME matches `pattern`."""
    found: dict[str, str] = {}
    for path in _python_sources("shared"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if (
                        isinstance(target, ast.Name)
                        and re.fullmatch(pattern, target.id)
                        and isinstance(node.value.value, str)
                    ):
                        found[f"{path.stem}.{target.id}"] = node.value.value
    return found


def settings_read_by_app() -> set[str]:
    """Every setting name shared/settings.py reads (`reader.<kind>("NAME", ...)`)."""
    text = (ROOT / "shared" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r"reader\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", text))


def logged_fields() -> set[str]:
    """Structured log field names the app writes: `extra={...}` keys and `log_fields(...)` keywords.

    These become customDimensions in Application Insights, so they are the names alerts and runbook
    queries may use.
    """
    fields: set[str] = set()
    for path in _python_sources("shared", "functions", "devhost"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    fields.update(
                        key.value
                        for key in keyword.value.keys
                        if isinstance(key, ast.Constant) and isinstance(key.value, str)
                    )
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "log_fields":
                fields.update(k.arg for k in node.keywords if k.arg)
    return fields


_CUSTOM_DIMENSION = re.compile(r"customDimensions(?:\.([A-Za-z_]\w*)|\[\s*[\"']([^\"']+)[\"']\s*\])")


def custom_dimensions_used(kql: str) -> set[str]:
    """Field names a KQL text reads from customDimensions (`.name` or `["name"]`)."""
    return {dotted or indexed for dotted, indexed in _CUSTOM_DIMENSION.findall(kql)}


# --- Application Insights (classic) and Log Analytics workspace column names -------------------------

# Application Insights' Logs use the classic schema (traces, timestamp, customDimensions); the same
# rows in the Log Analytics workspace use the workspace schema (AppTraces, TimeGenerated, Properties):
# https://learn.microsoft.com/azure/azure-monitor/app/convert-classic-resource#workspace-based-resource-changes
CLASSIC_TO_WORKSPACE = {
    "traces": "AppTraces",
    "requests": "AppRequests",
    "exceptions": "AppExceptions",
    "timestamp": "TimeGenerated",
    "customDimensions": "Properties",
    "message": "Message",
    "itemCount": "ItemCount",
    "operation_Name": "OperationName",
    "outerMessage": "OuterMessage",
    "type": "ExceptionType",
    "success": "Success",
    "name": "Name",
}

_KQL_TOKEN = re.compile(r"\"[^\"]*\"|'[^']*'|[A-Za-z_]\w*")


def to_workspace_schema(kql: str) -> str:
    """A classic-schema query in the workspace schema: identifiers renamed, string literals untouched."""

    def rename(match: re.Match[str]) -> str:
        token = match.group(0)
        return token if token[0] in "\"'" else CLASSIC_TO_WORKSPACE.get(token, token)

    return _KQL_TOKEN.sub(rename, kql)


# --- A small evaluator for the templates' integer and duration expressions --------------------------


def _top_level(text: str, char: str, start: int = 0) -> int:
    """Index of `char` outside parentheses, brackets and quotes, or -1."""
    depth, quote = 0, ""
    for index in range(start, len(text)):
        c = text[index]
        if quote:
            quote = "" if c == quote else quote
        elif c == "'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == char and depth == 0:
            return index
    return -1


def _to_python(expression: str) -> str:
    """A Bicep expression of the forms used in alerts.bicep as Python (ternaries right-nested)."""
    expression = expression.strip()
    question = _top_level(expression, "?")
    if question >= 0:
        colon = _top_level(expression, ":", question)
        condition, when_true, otherwise = (
            expression[:question],
            expression[question + 1 : colon],
            expression[colon + 1 :],
        )
        return f"(({_to_python(when_true)}) if ({_to_python(condition)}) else ({_to_python(otherwise)}))"
    assert "${" not in expression, f"string interpolation is not evaluated here: {expression}"
    return re.sub(r"\bstring\(", "str(", expression)


class Evaluator:
    """Evaluates `var` lines of a template for given parameter values."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.lines = dict(re.findall(r"^var (\w+) = (.+)$", template.text, flags=re.M))
        self.compiled: dict[str, Any] = {}

    def value(self, name: str, params: dict[str, Any]) -> Any:
        if name in params:
            return params[name]
        variable = self.template.variables.get(name)
        if isinstance(variable, dict) and all(isinstance(v, str) for v in variable.values()):
            return {key.strip("'"): value for key, value in variable.items()}  # an object literal
        if name not in self.compiled:
            self.compiled[name] = compile(_to_python(self.lines[name]), name, "eval")
        names = self.compiled[name].co_names
        scope = {n: self.value(n, params) for n in names if n not in {"str", "max", "min"}}
        return eval(self.compiled[name], {"str": str, "max": max, "min": min}, scope)  # noqa: S307


def duration_minutes(duration: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", duration)
    assert match and any(match.groups()), duration
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + minutes
