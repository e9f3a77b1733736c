"""The package's import graph has no cycles, imports inside functions and under
TYPE_CHECKING included (the layer contracts themselves are import-linter's, `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

import genbatch
from genbatch.models import BatchStatus, Counter, ItemState

ROOT = Path(genbatch.__file__).parent


def module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every genbatch module `name` imports, wherever in the file the import stands."""

    def owner(dotted: str) -> str:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(owner(a.name) for a in node.names if a.name.startswith("genbatch"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.startswith("genbatch"):
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in known else owner(base))
    found.discard(name)
    found.discard("")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_imports_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from genbatch.store import history\n")
    known = {"genbatch.store": path, "genbatch.store.history": path, "genbatch.x": path}
    assert imports_of("genbatch.x", path, known) == {"genbatch.store.history"}


def test_no_import_cycles_in_genbatch() -> None:
    known = module_names()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert graph.get("genbatch.worker.steps")
    assert cycles(graph) == []


def store_internals_used(source: str) -> list[int]:
    """Lines that reach into a job store's Redis client, key builder or raw keys
    (`store._r`, `rt.store.debug...`, `self.store.prefix`)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("r", "_r", "k", "prefix", "debug"):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name == "store":
                lines.append(node.lineno)
    return sorted(lines)


def test_the_store_check_sees_a_leak() -> None:
    source = "rt.store._r.get('x')\nstore.debug.pending('p', 'b')\nstore.items.get('i')"
    assert store_internals_used(source) == [1, 2]


def test_only_the_store_touches_redis_keys() -> None:
    leaks = {
        name: lines for name, path in module_names().items()
        if not name.startswith("genbatch.store")
        and (lines := store_internals_used(path.read_text(encoding="utf-8")))
    }
    assert leaks == {}


def redis_imported(source: str) -> bool:
    """Whether a module imports redis-py (or one of its modules), anywhere in the file."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "redis" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "redis":
            return True
    return False


# Outside the store, only these talk to Redis themselves: Celery's broker connection (a
# kombu workaround) and the demo's launcher of a Redis server.
REDIS_OUTSIDE_STORE = {"genbatch.worker.broker_fix", "genbatch.demo.redis_server",
                       "genbatch.demo.redis_sentinel"}


def test_only_the_store_imports_redis() -> None:
    """Redis errors reach the rest of genbatch as StoreUnavailable / StoreError
    (store/connection.py), so nothing else needs redis-py."""
    assert redis_imported("def f():\n    from redis.exceptions import ConnectionError\n")
    importers = {name for name, path in module_names().items()
                 if not name.startswith("genbatch.store")
                 and redis_imported(path.read_text(encoding="utf-8"))}
    assert importers == REDIS_OUTSIDE_STORE


STATE_WORDS = frozenset(
    {*(s.value for s in ItemState), *(s.value for s in BatchStatus), *(c.value for c in Counter)}
) - {Counter.TOTAL.value}


def state_literals(source: str) -> list[int]:
    """Lines of string literals that are an item state, batch status or counter name
    (docstrings aside), but for those whose line says why in a comment."""
    tree = ast.parse(source)
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.body and isinstance(n.body[0], ast.Expr)}
    lines = source.splitlines()
    return sorted(n.lineno for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in STATE_WORDS
                  and id(n) not in docs and "#" not in lines[n.lineno - 1])


def test_the_state_literal_check_sees_one() -> None:
    assert state_literals('"""pending"""\nx = "pending"\ny = "failed"  # a provider code\n') \
        == [2]


def test_store_and_worker_name_states_by_their_enums() -> None:
    """A misspelled state is then a mypy error, not a silent no-op transition."""
    found = {name: lines for name, path in module_names().items()
             if name.startswith(("genbatch.store", "genbatch.worker"))
             and (lines := state_literals(path.read_text(encoding="utf-8")))}
    assert found == {}
