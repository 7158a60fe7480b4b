"""The project's own set-up: dependency lists in agreement, the top-level layout, CI calling the README."""

import re
import subprocess

import pytest
import yaml

from ldm_lab.paths import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

TOP_LEVEL = {"README.md", "environment.yml", "notebooks", "ldm_lab", "data", "tests", "figures",
             "pyproject.toml", "Makefile", ".ci", ".gitignore"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    conda = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(entry["pip"] for entry in conda if isinstance(entry, dict))
    pinned = [req for req in pip_section if not req.startswith("-e")]
    assert sorted(pinned) == sorted(declared)  # same packages and the same version ranges
    assert {_name(r) for r in declared} >= {"torch", "torchvision", "numpy", "matplotlib", "pandas",
                                            "transformers", "open-clip-torch", "torch-fidelity", "ipywidgets",
                                            "jupyterlab", "safetensors", "tqdm", "pytest", "diffusers",
                                            "accelerate"}


def test_top_level_holds_what_the_product_card_names():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist, say): nothing to check
        return
    assert {path.split("/")[0] for path in tracked} <= TOP_LEVEL


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme and "make lab" in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "set -e" in ci and re.search(r"^make test\b", ci, re.M)
