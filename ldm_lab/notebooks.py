"""Run the notebooks headless (nbclient), in a profile, writing executed copies to a build folder.

Figures: each kernel draws with matplotlib's inline backend, so an executed copy carries every figure as an
``image/png`` output, as it would have in JupyterLab (widgets add the picture their controls draw by default, see
``ldm_lab.widgets``). Outputs: the figures and tables a notebook saves go beside the executed copies
(``<out>/<profile>/figures`` and ``.../results``, through ``LDM_LAB_OUTPUT``), so a run leaves the committed
``figures/`` and ``data/results/`` alone; ``refresh_committed=True`` (``ldm-lab notebooks --refresh-committed``,
``make refresh``) writes them there instead, to update what the repository records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ldm_lab.names import unknown_name_error
from ldm_lab.paths import OUTPUT_ENV, REPO_ROOT
from ldm_lab.profiles import PROFILE_ENV, check_profile

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"   # what JupyterLab's kernels draw with
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


@dataclass(frozen=True)
class NotebookResult:
    ok: bool
    seconds: float
    output: Path          # the executed copy (written even when a cell failed, to show where)
    error: str = ""       # the failing cell's error, shortened
    images: int = 0       # image outputs in the executed copy (count_images)
    outputs: Path | None = None   # where its figures and tables went (None: the committed figures/, data/results/)


def find_notebooks(names: Sequence[str] = ()) -> list[Path]:
    """The notebooks under ``notebooks/`` in order; ``names`` picks by file name or number prefix ("01")."""
    found = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    for name in names:
        if not any(_is_named(path, name) for path in found):
            raise unknown_name_error("notebook", name, [path.stem for path in found])
    return [path for path in found if any(_is_named(path, name) for name in names)]


def _is_named(notebook: Path, name: str) -> bool:
    """``name`` is the notebook's file name, its stem, or its number prefix."""
    return notebook.name == name or notebook.stem == name or notebook.name.startswith(f"{name}_")


def count_images(notebook: Mapping[str, Any]) -> int:
    """How many outputs of ``notebook`` (a parsed .ipynb) show a picture: display data or results whose bundle
    holds an image (a widget counts when its bundle carries the picture of its default state)."""
    return sum(any(kind in output.get("data", {}) for kind in IMAGE_TYPES)
               for cell in notebook["cells"] if cell["cell_type"] == "code"
               for output in cell.get("outputs", []))


def kernel_environment(profile: str, outputs: Path | None) -> dict[str, str]:
    """The kernel's environment: the profile, the inline backend, no model hub, and ``LDM_LAB_OUTPUT`` set to
    ``outputs`` (or removed, so that ``ldm_lab.paths`` writes to the committed folders)."""
    env = {**os.environ, PROFILE_ENV: profile, "MPLBACKEND": INLINE_BACKEND,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop(OUTPUT_ENV, None)
    if outputs is not None:
        env[OUTPUT_ENV] = str(outputs)
    return env


def run_notebook(path: Path, profile: str, out_dir: str | Path = "build/notebooks", timeout: int = 3600, *,
                 refresh_committed: bool = False) -> NotebookResult:
    """Execute ``path`` top to bottom with ``LDM_LAB_PROFILE=profile`` in a fresh kernel (cwd: notebooks/).

    The executed copy goes to ``out_dir/profile/``; the figures and tables the notebook saves go to
    ``out_dir/profile/figures`` and ``.../results`` unless ``refresh_committed``, which writes them to the
    repository's ``figures/`` and ``data/results/`` (not in the smoke profile, whose numbers mean nothing)."""
    check_profile(profile)
    if refresh_committed and profile == "smoke":
        raise ValueError("the smoke profile runs too few steps for the committed figures and tables; refresh them "
                         "with --profile laptop (or gpu), or drop --refresh-committed to write under build/")
    folder = Path(out_dir) / profile
    outputs = None if refresh_committed else folder.resolve()
    output = folder / path.name
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, error = time.perf_counter(), ""
    try:
        client.execute(env=kernel_environment(profile, outputs))
    except CellExecutionError as failure:
        error = f"{failure.ename}: {failure.evalue}"[:500]
    finally:
        nbformat.write(notebook, output)
    return NotebookResult(ok=not error, seconds=time.perf_counter() - start, output=output, error=error,
                          images=count_images(notebook), outputs=outputs)
