"""No function in the package runs over MAX_LINES lines (decorators excluded, docstring
included): a longer one is split into named steps. The simulator's route tables are the
exception: each is a list of small handlers that only reads well in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import genbatch

ROOT = Path(genbatch.__file__).parent
MAX_LINES = 60
ROUTE_TABLES = {("simulator", "routes")}  # (first folder under genbatch/, function name)
NOT_YET_SPLIT: set[str] = set()  # functions over the limit waiting for a split: none


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of each function in `source` longer than `limit` lines."""
    return [(node.name, node.end_lineno - node.lineno + 1)
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > limit]


def test_the_length_check_sees_a_long_function() -> None:
    source = "def short():\n    pass\n\n\ndef long():\n" + "    x = 1\n" * 5
    assert long_functions(source, limit=5) == [("long", 6)]


def test_no_function_is_over_the_limit() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        where = path.relative_to(ROOT)
        for name, lines in long_functions(path.read_text(encoding="utf-8")):
            if (where.parts[0], name) not in ROUTE_TABLES \
                    and f"{where.as_posix()}:{name}" not in NOT_YET_SPLIT:
                found.append(f"{where}:{name} ({lines} lines)")
    assert found == []
