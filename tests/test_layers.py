"""The package reads top-down: no import cycle, and no import from a lower layer to a higher one
(docs/architecture.md). Imports are read from the source (lazy ones inside functions too), so a
new upward import fails here, not in a reader's head."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "normlab"

# Lowest first. A module may import its own layer and the ones below.
LAYERS = [
    ("foundation", ["errors", "_version", "fileio", "recipes", "faults", "locks", "machine", "deps"]),
    ("components", ["nn", "data"]),
    ("schema and models", ["config", "grid", "models"]),
    ("run support", ["device", "evaluation", "plots", "rundir"]),
    ("inference", ["api", "export", "serving"]),
    ("training", ["train"]),
    ("analysis", ["analysis"]),
    ("experiments", ["experiments"]),
    ("interfaces", ["cli", "__main__", ""]),  # "" is the package's __init__
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str = None) -> set[str]:
    """Every normlab module `path` (module `name`) imports, as dotted names below normlab."""
    name = module_name(path) if name is None else name
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("normlab"):
            found.add(node.module.removeprefix("normlab").lstrip("."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("normlab").lstrip(".") for a in node.names
                         if a.name.startswith("normlab"))
    return found


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {m: {t for t in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def layer(module: str) -> int:
    return RANK[module.split(".")[0]]


def test_every_module_has_a_layer():
    assert all(m.split(".")[0] in RANK for m in MODULES), sorted(m for m in MODULES if m.split(".")[0] not in RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up_a_layer(module):
    up = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert not up, f"{module} (layer {LAYERS[layer(module)][0]!r}) imports {up}"


def test_no_import_cycle():
    # Package __init__ files re-export their modules; a module importing its package's
    # __init__ is not a cycle of the code, so those edges are left out.
    inits = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    graph = {m: {t for t in ts if t not in inits} for m, ts in GRAPH.items() if m not in inits}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import cycle: " + " -> ".join(path + [m, t])
            if t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_config_checks_types_and_ranges_only():
    """config.py knows no registry: model, dataset, optimizer and norm names are checked when a
    run is resolved (train/resolve.py), types and ranges at once."""
    from normlab.config import make_config
    from normlab.errors import ConfigError
    from normlab.train.resolve import resolve_config

    assert not any(t.split(".")[0] in ("train", "models") for t in GRAPH["config"]), GRAPH["config"]
    cfg = make_config({"model": "lenet-nb", "optimizer": "adamm", "norm": "bm"})
    with pytest.raises(ConfigError, match="unknown model 'lenet-nb'"):
        resolve_config(cfg)
    with pytest.raises(ConfigError, match="epochs: must be >= 1"):
        make_config({"model": "lenet-nb", "epochs": 0})


def reached(module: str) -> set[str]:
    """Every normlab module `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for t in GRAPH[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    return seen


INFERENCE = ("api", "export", "serving", "evaluation", "rundir", "models.from_config", "data.inputs")


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_imports_nothing_from_training(module):
    """Loading a run for predict, eval, export or serving builds its model from the config."""
    assert not sorted(t for t in reached(module) if t.split(".")[0] in ("train", "experiments")), module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] == "analysis"))
def test_analysis_reads_run_folders_only(module):
    """analysis/ computes statistics, reports and figures from what runs wrote: it neither trains
    nor runs experiments."""
    assert not sorted(t for t in reached(module) if t.split(".")[0] in ("train", "experiments")), module


def test_no_two_modules_share_a_name():
    names = {}
    for m in MODULES:
        if not m.endswith("__init__") and MODULES[m].name != "__init__.py":
            names.setdefault(m.split(".")[-1], []).append(m)
    assert not {n: ms for n, ms in names.items() if len(ms) > 1}


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: a lazy import of the trainer inside a function of data/ is found."""
    probe = tmp_path / "loader.py"
    probe.write_text((SRC / "data" / "loader.py").read_text() + "\n\ndef _probe():\n    from ..train import trainer\n")
    found = imports(probe, "data.loader")
    assert "train.trainer" in found and layer("train.trainer") > layer("data.loader")
