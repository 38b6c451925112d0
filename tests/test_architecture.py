"""The package layout holds: no import cycles between meterread's modules, the library never imports flows/, and
the light entry points (settings, CLI) load without torch, pyarrow or OpenCV."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "meterread"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, top_level_only: bool) -> set[str]:
    """Modules `path` imports (`from a.b import c` counts a.b and a.b.c when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def library_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, top_level_only) & set(modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None. Packages' __init__ importing nothing keeps this exact."""
    visiting, done = [], set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for child in sorted(graph.get(node, ())):
            if cycle := visit(child):
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_library_has_no_import_cycles():
    assert find_cycle(library_graph()) is None


def test_the_library_never_imports_flows():
    for path in PACKAGE.rglob("*.py"):
        imported = imports_of(path, top_level_only=False)
        assert not any(name == "flows" or name.startswith("flows.") for name in imported), path


def test_no_library_module_is_over_about_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return set(out.split())


def test_settings_and_the_cli_load_without_heavy_modules():
    heavy = {"torch", "transformers", "pyarrow", "cv2", "prefect", "s3fs"}
    assert not heavy & loaded_after("import meterread.config, meterread.models.patterns, meterread.models.registry")
    assert not heavy & loaded_after("import meterread.cli")
