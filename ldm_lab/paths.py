"""Where things live: the repository's folders, and the data cache (``LDM_LAB_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "LDM_LAB_DATA"


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Downloaded datasets: ``$LDM_LAB_DATA``, else ``data/cache/`` in the repository (git-ignored)."""
    return _made(Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data" / "cache").expanduser())


def results_dir() -> Path:
    """Tables the notebooks and benchmarks write: ``data/results/``."""
    return _made(REPO_ROOT / "data" / "results")


def figures_dir() -> Path:
    """Figures the notebooks save: ``figures/``."""
    return _made(REPO_ROOT / "figures")


def checkpoints_dir() -> Path:
    """Small checkpoints the project ships: ``data/checkpoints/``."""
    return _made(REPO_ROOT / "data" / "checkpoints")
