"""Run the notebooks headless (nbclient), in a profile, writing executed copies to a build folder."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ldm_lab.paths import REPO_ROOT
from ldm_lab.profiles import PROFILE_ENV, check_profile

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class NotebookResult:
    ok: bool
    seconds: float
    output: Path          # the executed copy (written even when a cell failed, to show where)
    error: str = ""       # the failing cell's error, shortened


def find_notebooks(names: Sequence[str] = ()) -> list[Path]:
    """The notebooks under ``notebooks/`` in order; ``names`` picks by file name or number prefix ("01")."""
    found = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    chosen = [path for path in found if any(path.name == n or path.stem == n or path.name.startswith(f"{n}_")
                                            for n in names)]
    if len(chosen) < len(names):
        raise ValueError(f"no notebook matches {list(names)}; available: {', '.join(p.stem for p in found)}")
    return chosen


def run_notebook(path: Path, profile: str, out_dir: str | Path = "build/notebooks",
                 timeout: int = 3600) -> NotebookResult:
    """Execute ``path`` top to bottom with ``LDM_LAB_PROFILE=profile`` in a fresh kernel (cwd: notebooks/)."""
    check_profile(profile)
    output = Path(out_dir) / profile / path.name
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(path, as_version=4)
    kernel_env = {**os.environ, PROFILE_ENV: profile, "MPLBACKEND": "Agg",
                  "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, error = time.perf_counter(), ""
    try:
        client.execute(env=kernel_env)
    except CellExecutionError as failure:
        error = f"{failure.ename}: {failure.evalue}"[:500]
    finally:
        nbformat.write(notebook, output)
    return NotebookResult(ok=not error, seconds=time.perf_counter() - start, output=output, error=error)
