"""The package's shape: the core never imports the analysis tools or the CLI, and no module reaches
into another's private names. Read from the source with ``ast``, so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "als_spark"

#: Subpackages that sit on top of the core; the core may import neither, analysis not the CLI.
#: ``python -m als_spark`` (``__main__``) is the command line's entry point, so it belongs to the CLI.
ANALYSIS, CLI = "als_spark.analysis", ("als_spark.cli", "als_spark.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, module: str) -> set[str]:
    """Every ``als_spark`` module ``path`` imports, at any depth (inside functions too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "als_spark"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base.split(".")[0] != "als_spark":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in _modules()}
    return found


def private_uses(path: Path) -> list[str]:
    """``from als_spark.x import _y`` and ``alias._y`` where ``alias`` is an imported ``als_spark`` module."""
    tree = ast.parse(path.read_text())
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("als_spark"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"from {node.module} import {a.name}")
                if f"{node.module}.{a.name}" in _modules():
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("als_spark"):
                    aliases.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_import_scanner_sees_absolute_relative_and_nested_imports(tmp_path):
    # A hand-made module: one import of each kind, one of them inside a function.
    pkg = tmp_path / "als_spark" / "analysis"
    pkg.mkdir(parents=True)
    source = pkg / "x.py"
    source.write_text(
        "import als_spark.cli\nfrom als_spark import model\nfrom . import lists\n"
        "def f():\n    from als_spark.analysis.reports import md_table\n"
    )
    assert imports(source, "als_spark.analysis.x") >= {
        "als_spark.cli",
        "als_spark",
        "als_spark.analysis",
        "als_spark.analysis.reports",
    }


def test_the_private_name_scanner_finds_both_forms(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from als_spark.analysis import evaluate\nfrom als_spark.model import _in\nevaluate._parts(1)\n")
    assert private_uses(source) == ["from als_spark.model import _in", "evaluate._parts"]


@pytest.mark.parametrize("module", sorted(m for m in _modules() if not m.startswith((ANALYSIS, *CLI))))
def test_the_core_imports_neither_the_analysis_tools_nor_the_cli(module):
    bad = sorted(i for i in imports(_modules()[module], module) if i.startswith((ANALYSIS, *CLI)))
    assert bad == [], f"{module} is core but imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.startswith(ANALYSIS)))
def test_the_analysis_tools_do_not_import_the_cli(module):
    bad = sorted(i for i in imports(_modules()[module], module) if i.startswith(CLI))
    assert bad == [], f"{module} imports {bad}"


def test_no_module_uses_another_modules_private_names():
    found = {m: private_uses(p) for m, p in _modules().items()}
    found["benchmarks.bench"] = private_uses(ROOT / "benchmarks" / "bench.py")
    assert {m: uses for m, uses in found.items() if uses} == {}


def test_no_module_is_over_400_lines():
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > 400} == {}


def _functions_used() -> dict[str, set[str]]:
    """``pyspark.sql.functions`` names the package uses (``F.name`` where ``F`` is that module), by name, with their modules."""
    used: dict[str, set[str]] = {}
    for module, path in _modules().items():
        tree = ast.parse(path.read_text())
        aliases = {
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "pyspark.sql"
            for a in node.names
            if a.name == "functions"
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                used.setdefault(node.attr, set()).add(module)
    return used


def test_every_spark_function_the_package_uses_exists_in_this_pyspark():
    # Run by the pyspark 3.5 CI step too, where it catches a function that only Spark 4 has in code
    # that no 3.5 test reaches.
    import pyspark
    from pyspark.sql import functions

    used = _functions_used()
    assert {"col", "lit", "when"} <= set(used)  # the walk finds uses at all
    missing = {name: sorted(mods) for name, mods in used.items() if not hasattr(functions, name)}
    assert not missing, f"not in pyspark {pyspark.__version__}'s functions: {missing}"
