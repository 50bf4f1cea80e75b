"""The shape of the package: route handlers run no SQL, and packages import each other without cycles."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maillage"
ROUTES = PACKAGE / "api" / "routes"

# --- No SQL in route modules -------------------------------------------------------------------

_DB_CALLS = {"execute", "executemany", "cursor", "fetchone", "fetchall", "fetchmany"}
_SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"COPY\s+[\w.]+\s*(\([^)]*\)\s*)?(FROM|TO)|CREATE\s+(TEMP\s+)?TABLE|ON\s+CONFLICT)\b",
    re.DOTALL,
)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may name SQL words)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def sql_findings(source: str, name: str = "<source>") -> list[str]:
    """What in `source` runs or spells SQL: database calls, SQL literals, `psycopg.sql` use."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            # `cur.copy("COPY …")` is SQL; `dict.copy()` and `copy.copy(x)` are not.
            sql_copy = called == "copy" and bool(node.args) and isinstance(
                node.args[0], ast.Constant | ast.JoinedStr | ast.Call)
            if called in _DB_CALLS or sql_copy:
                found.append(f"{name}:{node.lineno}: calls {called}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if _SQL.search(node.value):
                found.append(f"{name}:{node.lineno}: SQL literal {node.value[:40]!r}")
        elif isinstance(node, ast.ImportFrom) and node.module == "psycopg" and any(
                a.name == "sql" for a in node.names):
            found.append(f"{name}:{node.lineno}: imports psycopg.sql")
        elif isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if "psycopg.sql" in modules:
                found.append(f"{name}:{node.lineno}: imports psycopg.sql")
    return found


@pytest.mark.parametrize("source", [
    'async def h(conn):\n    await conn.execute("SELECT 1")\n',
    'def h(conn):\n    with conn.cursor() as cur:\n        pass\n',
    'def h(cur):\n    cur.copy("x")\n',
    'Q = "SELECT a, b FROM devices WHERE x = %s"\n',
    'def h(t):\n    return f"INSERT INTO {t} VALUES (1)"\n',
    "from psycopg import sql\n",
])
def test_the_checker_finds_sql(source: str) -> None:
    """The check below would catch a route that runs or spells SQL."""
    assert sql_findings(source)


def test_the_checker_lets_prose_and_calls_to_db_through() -> None:
    """Docstrings may mention SQL words; calling `maillage.db` functions is the point."""
    source = ('"""Select devices from the registry."""\n'
              "async def h(conn):\n"
              '    """SELECT ... FROM is in db/ now."""\n'
              "    return await db_devices.list_devices(conn=conn, types=[], tenant=None)\n")
    assert sql_findings(source) == []


def test_no_route_module_runs_sql() -> None:
    """Handlers validate, authorise and shape; SQL lives in `maillage/db/` (issue #18)."""
    modules = sorted(ROUTES.glob("*.py"))
    assert len(modules) >= 5
    found = [f for m in modules for f in sql_findings(m.read_text(), m.relative_to(PACKAGE).as_posix())]
    assert found == []


# --- No import cycles between packages --------------------------------------------------------

# Edges of a cycle that sit in files owned by work going on in parallel (detection and bench):
# listed so the test guards everything else now; the integrator moves them and empties this.
KNOWN_EDGES: dict[tuple[str, str], str] = {
}


def _unit(module: str) -> str:
    """The package a module counts for: `maillage.db.readings` -> `db`, `maillage.config` -> `config`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every maillage module `path` imports, at module level or inside functions, with its line."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])  # for `__init__.py` too: its stem is the last part
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "maillage":  # `from maillage import topics`: the names are modules
                for alias in node.names:
                    yield f"maillage.{alias.name}", node.lineno
            else:
                yield module, node.lineno


def package_graph(root: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> where, for every import across packages."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        here = _unit(".".join(rel.parts))
        for module, line in _imports(path):
            if module == "maillage" or not module.startswith("maillage."):
                continue
            there = _unit(module)
            if there != here:
                edges[(here, there)].append(f"{rel.as_posix()}.py:{line} imports {module}")
    return dict(edges)


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b in sorted(edges):
        graph[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    """The check would fail on a three-package loop."""
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
    assert cycles({("a", "b"), ("b", "c")}) == []


def test_no_import_cycle_between_packages() -> None:
    """Imports run one way between `maillage`'s packages (module-level and in functions)."""
    edges = package_graph()
    found = cycles(set(edges) - set(KNOWN_EDGES))
    detail = [w for group in found for (a, b), where in edges.items()
              if a in group and b in group for w in where]
    assert found == [], "\n".join(detail)


def test_known_cycle_edges_are_still_there() -> None:
    """Each tolerated edge still exists: once moved, it leaves the list (no stale excuses)."""
    edges = package_graph()
    assert [e for e in KNOWN_EDGES if e not in edges] == []


# Floors: entry points on top, what every package shares at the bottom (README, "Layout").
FLOORS = {"cli": 6, "bench": 6, "__main__": 6, "stack": 5, "simulators": 5, "eval": 5, "api": 4,
          "dashboards": 4, "opendata": 4, "ingest": 3, "processors": 3, "db": 2, "registry": 2,
          "mqtt": 2}
SHARED = 1  # config, errors, logs, topics, vocabulary, envelope, observability


APART = {("api", "processors")}  # they meet through Kafka topics and tables, not imports


def test_no_package_imports_a_higher_floor() -> None:
    """Imports run down (or sideways within a floor), never up: a processor never imports the API."""
    up = [w for (a, b), where in package_graph().items() if (a, b) not in KNOWN_EDGES
          and (FLOORS.get(a, SHARED) < FLOORS.get(b, SHARED) or (a, b) in APART) for w in where]
    assert up == []


def test_every_package_has_a_floor() -> None:
    """A new package is placed on a floor here (else it would count as shared by all)."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert sorted(packages - set(FLOORS)) == []


# --- SQL lives on floor 2 -----------------------------------------------------------------------

SQL_HOMES = {"db", "registry"}
# Modules of work going on in parallel that still run SQL themselves: the integrator moves it to
# db/ (bench: db/bench.py or the like; detection: db/detection.py, where its writes already are).
KNOWN_SQL = {"bench/baselines.py", "bench/commune.py", "bench/falls.py", "bench/probes.py",
             "bench/queries.py", "processors/detection/directory.py",
             "processors/detection/outbox.py"}


def test_sql_lives_in_db_and_registry() -> None:
    """Outside `db/` and `registry/`, modules call query functions; they run no SQL themselves."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.split("/")[0] in SQL_HOMES or rel in KNOWN_SQL:
            continue
        found += sql_findings(path.read_text(), rel)
    assert found == []
