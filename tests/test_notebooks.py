"""Every notebook is committed clean, has a parameters cell, and runs top to bottom in the smoke profile."""

import json

import pytest

from ldm_lab.notebooks import find_notebooks, run_notebook

NOTEBOOKS = find_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_parameters_cell(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"  # papermill and nbclient need it
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in code), "strip outputs"
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell must be tagged parameters"
    assert "PROFILE" in "".join(code[0]["source"])


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(path, tmp_path):
    result = run_notebook(path, profile="smoke", out_dir=tmp_path, timeout=600)
    assert result.ok, f"{path.name} failed: {result.error} (executed copy: {result.output})"
