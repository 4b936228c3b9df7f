"""Code shape: every function in `shared/` is short enough to read at once (under 50 lines).

A function that is one big literal counts too: data belongs in module-level structures or small
builder functions. Lines run from `def` to the function's last line (decorators excluded), so
docstrings and comments count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 49


def long_functions(package: Path) -> list[str]:
    """Every function of `package` longer than MAX_LINES, as `path:line name (n lines)`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_LINES:
                    where = path.relative_to(package.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_every_function_in_shared_is_under_50_lines() -> None:
    assert long_functions(ROOT / "shared") == []


def test_the_check_names_a_function_of_50_lines_and_passes_one_of_49(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    lines = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    (package / "a.py").write_text(
        f"def fits() -> None:\n{lines}\n\n\ndef too_long() -> None:\n{lines}\n    y = 0\n"
    )
    assert long_functions(package) == [f"pkg/a.py:{MAX_LINES + 3} too_long (50 lines)"]
