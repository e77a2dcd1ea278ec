"""The package rules of docs/architecture.md, checked on every `import` in star/ (the module level and inside
functions alike, read with ast: a lazy import is still a dependency).

    no cycle          between modules, nor between star's packages (star.text, star.graph, star.versions, ...)
    star.versions     reaches nothing of star.text, star.graph, star.pipeline or the CLI, however indirectly
    model modules     of star.text, star.graph and star.ranker reach neither feast, psycopg, pgvector nor the
                      database (star.db, star.store): torch and numpy only; every other module there is a job
    feast             only inside star.store
    entity names      from star.common; only the ingestion path (star.data, star.store.marketplace) reads
                      star.data.format
    vintage registry  only star/store/registry.py names star.embedding_versions in code, or builds a
                      <family>_v<k> name with an f-string (everyone else calls registry.view_name / table)
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "star"

# torch / numpy code: a model, its config, its loss, its training loop, its save / load
MODELS = {
    "star.text": {"chunking", "config", "evaluate", "loading", "losses", "market_eval", "model", "train"},
    "star.graph": {"aligner", "checkpoint", "config", "dgl_compat", "distributed", "inputs", "model", "sampling",
                   "train"},
    "star.ranker": {"config", "model", "train"},
}
# the jobs that read from and write to the database around those models
JOBS = {
    "star.text": {"embed", "embed_ray"},
    "star.graph": {"align", "build", "embed", "evaluate", "features"},
    "star.ranker": set(),
}
DATABASE = ("feast", "psycopg", "pgvector", "sqlalchemy", "star.db", "star.store")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


@cache
def imports(module: str) -> frozenset[str]:
    """Every module `module` imports (star modules by their full name, others by their top-level package)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from package (minus level - 1 parts)
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out |= {n if n in MODULES or n.startswith("star.") else n.split(".")[0] for n in names}
    return frozenset(out)


def reach(module: str) -> set[str]:
    """Everything `module` imports, directly or through other star modules."""
    seen, todo = set(), [module]
    while todo:
        for target in imports(todo.pop()):
            if target not in seen:
                seen.add(target)
                if target in MODULES:
                    todo.append(target)
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_parser_sees_lazy_and_relative_imports():
    """The rules below would pass vacuously if the parser missed imports inside functions."""
    assert "star.store.locks" in imports("star.versions.publish")  # imported inside publish()
    assert "star.graph.build" in imports("star.graph.align")  # inside alignment_targets()
    assert "feast" in imports("star.store.feast_repo") and "torch" in imports("star.text.model")


def test_no_import_cycle_between_modules():
    graph = {m: {t for t in imports(m) if t in MODULES} for m in MODULES}
    assert _cycles(graph) == [], "modules importing each other: move what both need to the module that owns it"


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        graph.setdefault(_package(m), set()).update(_package(t) for t in imports(m)
                                                    if t in MODULES and _package(t) != _package(m))
    assert _cycles(graph) == []


def test_versions_reach_neither_text_graph_pipeline_nor_cli():
    forbidden = ("star.text", "star.graph", "star.pipeline", "star.cli", "star.cli_common", "star.cli_versions")
    bad = {m: sorted(t for t in reach(m) if _within(t, forbidden)) for m in MODULES if _within(m, ["star.versions"])}
    assert {m: t for m, t in bad.items() if t} == {}


def test_every_text_graph_and_ranker_module_is_a_model_or_a_job():
    for package in MODELS:
        here = {m.rpartition(".")[2] for m in MODULES if m.startswith(package + ".")}
        assert here == MODELS[package] | JOBS[package], f"classify the new modules of {package} here"
        assert not MODELS[package] & JOBS[package]


def test_model_modules_reach_no_database_and_no_feast():
    bad = {}
    for package, names in MODELS.items():
        for name in sorted(names):
            module = f"{package}.{name}"
            hits = sorted(t for t in reach(module) if _within(t, DATABASE))
            if hits:
                bad[module] = hits
    assert bad == {}, "model code must run without a database: move the SQL to star/store or to a job module"


def test_only_star_store_imports_feast():
    assert sorted(m for m in MODULES if "feast" in imports(m) and not _within(m, ["star.store"])) == []


def test_entity_names_come_from_star_common_not_the_ingestion_validator():
    readers = sorted(m for m in MODULES if "star.data.format" in imports(m))
    assert all(_within(m, ["star.data", "star.store.marketplace"]) for m in readers), readers
    assert "star.common" in imports("star.data.format")  # the validator uses the shared names too


def test_shared_helpers_are_not_borrowed_from_text_training():
    """AUC and seeding come from star.common: the graph, the ranker and the gate import nothing of star.text."""
    for package in ("star.graph", "star.ranker", "star.versions", "star.store", "star.data"):
        users = sorted(m for m in MODULES if _within(m, [package]) and any(_within(t, ["star.text"])
                                                                            for t in imports(m)))
        assert users == [], package


REGISTRY = "star.store.registry"


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in the code: constants and f-string parts, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def _versioned_name_fstrings(path: Path) -> list[int]:
    """Lines of f-strings that glue '_v' between two values: f"{family}_v{version}" and the like."""
    out = []
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.JoinedStr):
            parts = n.values
            out += [n.lineno for a, b in zip(parts, parts[1:]) if isinstance(a, ast.Constant)
                    and str(a.value).endswith("_v") and isinstance(b, ast.FormattedValue)]
    return out


def test_only_the_registry_module_touches_the_vintage_registry_table():
    """star.embedding_versions is read and written in star/store/registry.py only (migrations create it)."""
    users = sorted(m for m, path in MODULES.items() if m != REGISTRY and not m.startswith("star.migrations")
                   and any("embedding_versions" in text for _, text in _code_strings(path)))
    assert users == [], "call star.store.registry instead of querying star.embedding_versions"
    assert any("embedding_versions" in text for _, text in _code_strings(MODULES[REGISTRY]))


def test_vintage_names_come_from_one_function():
    """<family>_v<k> is spelled by star.store.registry.view_name (and its table / qualified helpers) only."""
    bad = {m: lines for m, path in MODULES.items() if m != REGISTRY and (lines := _versioned_name_fstrings(path))}
    assert bad == {}, "use star.store.registry.view_name(family, version)"
    assert _versioned_name_fstrings(MODULES[REGISTRY])  # the check sees the one f-string that is allowed

