"""Every notebook is committed clean, has a parameters cell, and runs top to bottom in the smoke profile, showing
at least its own number of figures; the runner draws inline and keeps the committed figures/ and data/results/."""

import base64
import json

import matplotlib.pyplot as plt
import nbformat
import pytest
import torch

from ldm_lab import widgets
from ldm_lab.diffusion import make_schedule
from ldm_lab.notebooks import INLINE_BACKEND, count_images, find_notebooks, kernel_environment, run_notebook
from ldm_lab.paths import OUTPUT_ENV

NOTEBOOKS = find_notebooks()

# The fewest image outputs (figures, and widgets showing their default picture) each notebook's executed copy
# holds in the smoke profile: what it shows today. A notebook that adds figures raises its number.
MIN_IMAGES = {
    "00_tour": 6,
    "01_diffusion_basics": 11,
    "02_autoencoders": 10,
    "03_compression_ablation": 5,
    "04_conditioning": 11,
    "05_sd_versions": 3,
    "06_sdxl": 11,
    "07_add_turbo": 5,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_parameters_cell(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"  # papermill and nbclient need it
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in code), "strip outputs"
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell must be tagged parameters"
    assert "PROFILE" in "".join(code[0]["source"])


def test_every_notebook_declares_how_many_figures_it_shows():
    assert sorted(MIN_IMAGES) == [path.stem for path in NOTEBOOKS], "add the new notebook to MIN_IMAGES"
    assert all(count >= 1 for count in MIN_IMAGES.values())


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(path, tmp_path):
    result = run_notebook(path, profile="smoke", out_dir=tmp_path, timeout=600)
    assert result.ok, f"{path.name} failed: {result.error} (executed copy: {result.output})"
    assert result.images >= MIN_IMAGES[path.stem], (
        f"{path.name} shows {result.images} images, fewer than its {MIN_IMAGES[path.stem]}: a figure was closed "
        f"before the cell ended, or a widget lost its picture (executed copy: {result.output})")


def test_images_are_counted_per_output_whatever_their_format():
    cells = [nbformat.v4.new_code_cell(outputs=[
                 nbformat.v4.new_output("display_data", data={"image/png": "iVBO", "text/plain": "<Figure>"}),
                 nbformat.v4.new_output("stream", text="loss 0.1\n"),
                 nbformat.v4.new_output("execute_result", data={"image/svg+xml": "<svg/>"}, execution_count=1)]),
             nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data",
                                                                       data={"text/plain": "<Figure size 820x130>"})]),
             nbformat.v4.new_markdown_cell("![a picture](figures/x.png)")]
    assert count_images(nbformat.v4.new_notebook(cells=cells)) == 2


def test_kernels_draw_inline_and_save_beside_the_copies_unless_refreshing(monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")        # as the tests themselves draw
    monkeypatch.setenv(OUTPUT_ENV, "/somewhere/else")
    env = kernel_environment("smoke", tmp_path / "smoke")
    assert env["MPLBACKEND"] == INLINE_BACKEND and env[OUTPUT_ENV] == str(tmp_path / "smoke")
    assert env["LDM_LAB_PROFILE"] == "smoke"
    assert OUTPUT_ENV not in kernel_environment("laptop", None)   # refreshing: ldm_lab.paths' committed folders
    with pytest.raises(ValueError, match="--profile laptop"):
        run_notebook(NOTEBOOKS[0], profile="smoke", out_dir=tmp_path, refresh_committed=True)


def test_a_widget_displays_its_default_picture_beside_the_live_controls():
    open_before = set(plt.get_fignums())            # figures other tests left open are not this widget's
    box = widgets.noise_level_scrubber(torch.zeros(2, 1, 8, 8), make_schedule("linear"), timestep=100)
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    before = bundle["image/png"]
    box.children[0].value = 900                     # the slider: the picture follows it
    assert box._repr_mimebundle_()["image/png"] != before
    assert set(plt.get_fignums()) <= open_before    # drawn and closed, so an inline backend shows it only once


@pytest.mark.notebook
def test_an_executed_copy_carries_inline_figures_and_widget_pictures(tmp_path):
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    notebook.cells = [
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1]);"),
        nbformat.v4.new_code_cell("import torch\nfrom ldm_lab import widgets\nfrom ldm_lab.diffusion import "
                                  "make_schedule\nwidgets.noise_level_scrubber(torch.zeros(1, 1, 8, 8), "
                                  "make_schedule('linear'))"),
        nbformat.v4.new_code_cell("from ldm_lab.paths import figures_dir\nprint(figures_dir())")]
    path = tmp_path / "notebooks" / "99_probe.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook, path)
    result = run_notebook(path, profile="smoke", out_dir=tmp_path / "build", timeout=300)
    assert result.ok, result.error
    assert result.images == 2 and result.outputs == (tmp_path / "build" / "smoke").resolve()
    executed = nbformat.read(result.output, as_version=4)
    assert executed.cells[2].outputs[0].text.strip() == str(tmp_path / "build" / "smoke" / "figures")
