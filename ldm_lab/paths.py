"""Where things live: the repository's folders and the commit it is at (for provenance), the data cache
(``LDM_LAB_DATA``), and where figures, tables and runs go (``LDM_LAB_OUTPUT``; the tests point it at a temporary
folder so they never overwrite committed results)."""

from __future__ import annotations

import os
import subprocess
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


COMMIT_ENV = "LDM_LAB_GIT_COMMIT"  # the commit of a copied tree that has no .git (e.g. on a rented GPU machine)


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The checked-out commit of ``repo`` (``"unknown"`` outside a git work tree); ``+dirty`` if files changed.
    ``$LDM_LAB_GIT_COMMIT``, when set, names it instead (code copied without its git history)."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
