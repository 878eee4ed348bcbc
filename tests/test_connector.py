"""The ``connector`` package as a whole (``connector/__init__.py``; tests/ mirrors connector/,
so its own test sits at the top of tests/).

The public API (``connector.__all__``): the names users import stay, each resolves to what its
module defines, and none of them costs an import at ``import connector`` time.

The module map: ``connector`` and ``dagster_defs`` import as a DAG (no cycles), every module
of ``connector`` lives in a stage folder, and the stages import only downward (``LAYERS``,
drawn in docs/architecture.md); option types and columnar events are leaf modules."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import connector

# The public names. Removing or renaming one breaks users' code: change this list only on
# purpose, and say so in the commit.
PUBLIC = {
    "INCREMENTAL",
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "DeliveryError",
    "Reader",
    "RequestError",
    "RetriesExhausted",
    "Runtime",
    "SourceError",
    "StateError",
    "StateStore",
    "SyncConfig",
    "SyncResult",
    "SyncSet",
    "Window",
    "__version__",
    "json_schema",
    "load_sync",
    "load_syncs",
    "parse_sync",
    "preview",
    "preview_frame",
    "run_sync",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(connector.__all__) == PUBLIC
    assert len(connector.__all__) == len(PUBLIC), "a name is listed twice in __all__"


def test_every_public_name_resolves_to_its_defining_module() -> None:
    for name in sorted(PUBLIC - {"__version__"}):
        value = getattr(connector, name)
        module = connector._EXPORTS[name]
        assert value is getattr(__import__(f"connector{module}", fromlist=[name]), name), (
            f"connector.{name} is not {module}.{name}"
        )
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"connector.{name} has no docstring"


def test_errors_share_one_base_class() -> None:
    for name in ("AuthError", "ConfigError", "DeliveryError", "RequestError", "SourceError"):
        assert issubclass(getattr(connector, name), connector.ConnectorError), name


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    try:
        connector.run_syncs  # noqa: B018
    except AttributeError as exc:
        assert "run_syncs" in str(exc)
    else:
        raise AssertionError("connector.run_syncs resolved")


def test_import_connector_imports_no_stage() -> None:
    probe = (
        "import json, sys, connector; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('connector.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("connector", "dagster_defs")


# --------------------------------------------------------------------------- the import graph


def _modules() -> dict[str, tuple[Path, bool]]:
    found: dict[str, tuple[Path, bool]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports, anywhere in the file (top level, inside a
    function or under ``TYPE_CHECKING``: a lazy import is still a dependency). ``from x import
    y`` depends on module ``x.y`` when that is a module, else on ``x``. The registry imports its
    endpoint modules by name: those names are edges too."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in mods else base)
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add(target)
    registry_mod = "connector.destinations.registry"
    graph[registry_mod] |= {f"connector.destinations.{m}" for m in _registered_modules()}
    return graph


def _registry_lines() -> list[tuple[str, str]]:
    """``ENDPOINT_MODULES`` as written in registry.py, ``(type, module)`` per line, in order
    and with any repeated type kept (read with ast, not imported: a dict display would drop
    a repeated key silently)."""
    tree = ast.parse((ROOT / "connector" / "destinations" / "registry.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "ENDPOINT_MODULES"
            and isinstance(node.value, ast.Dict)
        ):
            lines = [
                (ast.literal_eval(k), ast.literal_eval(v))
                for k, v in zip(node.value.keys, node.value.values, strict=True)
                if k is not None
            ]
            assert all(isinstance(t, str) and isinstance(m, str) for t, m in lines)
            return lines
    raise AssertionError("registry.py has no ENDPOINT_MODULES = {type: module, ...}")


def _registered_modules() -> list[str]:
    """The endpoint modules ``ENDPOINT_MODULES`` names, in order."""
    return [module for _, module in _registry_lines()]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph is a DAG."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_dag() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    # A lazy import inside a function is an edge: the graph of this very shape had
    # cli -> demo_run (lazy) and demo_run -> cli (lazy) before the summary module.
    assert find_cycle({"cli": {"demo_run"}, "demo_run": {"cli"}}) == ["cli", "demo_run", "cli"]


def test_connector_and_dagster_defs_import_as_a_dag() -> None:
    graph = import_graph()
    assert "connector.destinations.omnisend.events" in graph["connector.destinations.registry"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


# The stages of connector/, lowest first: a module imports only its own folder and folders of
# lower layers (never a peer of its own layer, never one above). docs/architecture.md draws it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "sandbox"),
    ("model",),
    ("destinations",),
    ("config",),
    ("warehouses",),
    ("map", "read", "store"),
    ("plan", "deliver", "audit"),
    ("contacts",),
    ("run",),
    ("report",),
    ("verify",),  # connector verify: reads contacts back (docs/verify.md)
    ("",),  # connector/__init__.py: the public API
    ("cli",),
    ("dagster_defs",),
)


def _stage(module: str) -> str:
    """The stage folder of a module: ``connector.read.source`` → ``read``."""
    parts = module.split(".")
    if parts[0] == "dagster_defs":
        return "dagster_defs"
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a module into a folder of its own layer or of a layer above it."""
    rank = {stage: i for i, stages in enumerate(LAYERS) for stage in stages}
    out = []
    for module, targets in sorted(graph.items()):
        here = _stage(module)
        for target in sorted(targets):
            there = _stage(target)
            if there != here and rank[there] >= rank[here]:
                out.append(f"{module} -> {target}")
    return out


def test_every_module_of_connector_lives_in_a_stage_folder() -> None:
    loose = [p.name for p in (ROOT / "connector").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "a module of connector/ belongs in the folder of its stage"


def test_the_stages_import_only_downward() -> None:
    assert upward_imports(import_graph()) == []


def test_the_layer_check_finds_an_upward_or_sideways_import() -> None:
    graph = {
        "connector.read.source": {"connector.run.sync", "connector.config.sync_file"},
        "connector.store.state": {"connector.read.source"},
        "connector.config.sync_file": set(),
        "connector.run.sync": set(),
    }
    assert upward_imports(graph) == [
        "connector.read.source -> connector.run.sync",
        "connector.store.state -> connector.read.source",
    ]


def test_option_types_and_columnar_events_are_leaf_modules() -> None:
    graph = import_graph()
    assert graph["connector.core.options"] == set()
    # ``core.lazy`` (pyarrow and numpy imported on first use) is a leaf as well.
    assert graph["connector.core.lazy"] == set()
    assert graph["connector.model.events"] <= {"connector.model.jsonfrag", "connector.core.lazy"}
    assert graph["connector.model.jsonfrag"] <= {"connector.core.lazy"}
    # Destinations depend on the leaves, never on config (which depends on the registry).
    for module in [m for m in graph if m.startswith("connector.destinations.")]:
        assert "connector.config.sync_file" not in graph[module], module
        assert "connector.map.mapper" not in graph[module], module
