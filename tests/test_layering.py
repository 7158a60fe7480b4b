"""The package's layers: the checkpoint store at the bottom, the tasks below shipping, bench a library whose
command line lives in cli.py, and no function-level imports of the package to dodge import cycles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import ldm_lab
from ldm_lab.cli import main

PACKAGE = Path(ldm_lab.__file__).parent

# Function-level imports of ldm_lab modules that are deliberate, and why: none of them breaks a cycle.
LAZY_IMPORTS = {
    "cli.py": "each command imports what it runs, so `ldm-lab --help` and `data info` start without torch",
    "quality/arms.py": "the diffusers arm needs diffusers, an optional dependency",
    "quality/benchmark.py": "matplotlib only where a figure is drawn",
    "compression/checkpoints.py": "the ship machinery only when a retraining budget is given",
    "quality/ablation.py": "an arm subprocess loads the trained first stage and the scorer only when it runs",
}


def imported_package_modules(statement: str) -> set[str]:
    """The ldm_lab modules a fresh interpreter holds after ``statement``."""
    code = f"{statement}; import sys, json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('ldm_lab'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_checkpoint_store_imports_nothing_above_it():
    modules = imported_package_modules("import ldm_lab.checkpoints")
    above = {m for m in modules if m.split(".")[1:2] and m.split(".")[1] in
             ("training", "nn", "diffusion", "conditioning", "models", "tasks", "evaluation_models", "shipping",
              "metrics", "compression", "quality", "presets")}
    assert not above, f"ldm_lab.checkpoints pulls in {sorted(above)}"
    assert "ldm_lab.files" in modules  # the locked, atomic manifest write


def test_the_tasks_layer_does_not_import_shipping():
    modules = imported_package_modules("import ldm_lab.tasks")
    assert not any(m.startswith("ldm_lab.shipping") for m in modules)


def function_level_package_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ldm_lab"):
                    lines.append(node.lineno)
                elif isinstance(node, ast.Import) and any(a.name.startswith("ldm_lab") for a in node.names):
                    lines.append(node.lineno)
    return lines


def test_no_function_imports_the_package_except_the_listed_lazy_ones():
    found = {str(path.relative_to(PACKAGE)): lines for path in sorted(PACKAGE.rglob("*.py"))
             if (lines := function_level_package_imports(path))}
    unexplained = {name: lines for name, lines in found.items() if name not in LAZY_IMPORTS}
    assert not unexplained, ("import at module level (a cycle means a module sits in the wrong layer), or add the "
                             f"file to LAZY_IMPORTS with its reason: {unexplained}")


def test_bench_is_a_library_and_the_unet_benchmark_runs_from_the_command_line(capsys):
    source = (PACKAGE / "bench.py").read_text(encoding="utf-8")
    assert "argparse" not in source and "__main__" not in source
    assert main(["bench-unet", "--batch", "1", "--size", "8", "--repeats", "1", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"train_step", "inference"}
    assert all(row["ours"] > 0 and row["diffusers"] > 0 for row in result.values())
