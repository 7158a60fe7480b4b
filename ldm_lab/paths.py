"""Where things live: the repository's folders, the data cache (``LDM_LAB_DATA``), and where figures and tables
go (``LDM_LAB_OUTPUT``; the tests point it at a temporary folder so they never overwrite committed results)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "LDM_LAB_DATA"
OUTPUT_ENV = "LDM_LAB_OUTPUT"


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Downloaded datasets: ``$LDM_LAB_DATA``, else ``data/cache/`` in the repository (git-ignored)."""
    return _made(Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data" / "cache").expanduser())


def results_dir() -> Path:
    """Tables the notebooks and benchmarks write: ``data/results/`` (or ``$LDM_LAB_OUTPUT/results``)."""
    output = os.environ.get(OUTPUT_ENV)
    return _made(Path(output) / "results" if output else REPO_ROOT / "data" / "results")


def figures_dir() -> Path:
    """Figures the notebooks save: ``figures/`` (or ``$LDM_LAB_OUTPUT/figures``)."""
    output = os.environ.get(OUTPUT_ENV)
    return _made(Path(output) / "figures" if output else REPO_ROOT / "figures")


def runs_dir() -> Path:
    """Training runs (checkpoints, logs, samples): ``build/runs/`` (git-ignored), or ``$LDM_LAB_OUTPUT/runs``."""
    output = os.environ.get(OUTPUT_ENV)
    return _made(Path(output) / "runs" if output else REPO_ROOT / "build" / "runs")


def checkpoints_dir() -> Path:
    """Small checkpoints the project ships: ``data/checkpoints/``."""
    return _made(REPO_ROOT / "data" / "checkpoints")
