"""The sandbox stays in small pieces: every function under 50 lines, every module under 500.

A function is measured from its first decorator to its last line, so a function that is one big
literal counts too (keep such data at module level).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SANDBOX = Path(__file__).resolve().parents[2] / "sandbox"
MAX_FUNCTION_LINES = 49
MAX_MODULE_LINES = 499


def oversized(root: Path) -> list[str]:
    """`path:line name (n lines)` for every function or module of `root` over its limit."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(root.parent).as_posix()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{name} ({lines} lines; a module must stay under {MAX_MODULE_LINES + 1})")
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(
                        f"{name}:{node.lineno} {node.name} ({length} lines; a function must stay under "
                        f"{MAX_FUNCTION_LINES + 1})"
                    )
    return found


def test_no_sandbox_function_or_module_is_too_long() -> None:
    assert oversized(SANDBOX) == []


def _function(name: str, body_lines: int, decorator: str = "") -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(body_lines))
    return f"{decorator}def {name}() -> None:\n{body}"


@pytest.mark.parametrize(
    ("source", "offender"),
    [
        (_function("long_one", MAX_FUNCTION_LINES), "pkg/mod.py:1 long_one (50 lines"),
        (
            _function("decorated", MAX_FUNCTION_LINES - 1, "@staticmethod\n"),
            "pkg/mod.py:2 decorated (50 lines",
        ),
        ("DATA = 1\n" * (MAX_MODULE_LINES + 1), "pkg/mod.py (500 lines"),
    ],
)
def test_the_check_names_the_offender(tmp_path: Path, source: str, offender: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(source, encoding="utf-8")
    [found] = oversized(package)
    assert found.startswith(offender)


def test_the_check_accepts_what_fits(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    source = _function("fits", MAX_FUNCTION_LINES - 1) + "DATA = 1\n" * (
        MAX_MODULE_LINES - MAX_FUNCTION_LINES
    )
    (package / "mod.py").write_text(source, encoding="utf-8")
    assert len(source.splitlines()) == MAX_MODULE_LINES
    assert oversized(package) == []
