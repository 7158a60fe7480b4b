"""Result rows of the compression ablation: one row per model (and checkpoint), its numbers as columns, and the
columns every result of ldm-lab carries (``ldm_lab.metrics.ResultRecord``'s: feature space, sample count,
profile, device, commit, time), so that a number is never read without what it was measured in and on."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ldm_lab.device import default_device
from ldm_lab.paths import REPO_ROOT, git_commit, results_dir
from ldm_lab.profiles import current_profile

AUTOENCODERS_TABLE = "autoencoders"                # data/results/autoencoders.csv: LDM Tab. 8 in miniature
COMPRESSION_CURVE_TABLE = "compression_ablation"    # data/results/compression_ablation.csv: Fig. 6, every kept
                                                     # checkpoint, recorded from the runs (ldm-lab compression-curve)
SHIPPED_ABLATION_TABLE = "compression_ablation_shipped"  # notebook 03's live measurement of the shipped (final)
                                                         # models, with their throughput (Tab. 6)


@dataclass(frozen=True, kw_only=True)
class Measured:
    """The metadata columns of a result row (as ``ResultRecord``'s)."""

    feature_space: str           # where FID-like numbers live ("lab-clip"); PSNR/SSIM are in pixels regardless
    num_samples: int             # FID is biased at small N: compare rows with equal num_samples only
    profile: str = field(default_factory=current_profile)
    device: str = field(default_factory=lambda: str(default_device()))
    git_commit: str = field(default_factory=git_commit)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


METADATA_COLUMNS = tuple(f.name for f in dataclasses.fields(Measured))


def rows_frame(rows: Sequence[Measured]) -> pd.DataFrame:
    """One line per row: its own numbers first, the metadata columns last."""
    frame = pd.DataFrame([dataclasses.asdict(row) for row in rows])
    own = [column for column in frame.columns if column not in METADATA_COLUMNS]
    return frame[own + [column for column in METADATA_COLUMNS if column in frame.columns]]


def append_rows(rows: Sequence[Measured], table: str, folder: Path | None = None) -> Path:
    """Append ``rows`` to ``<folder or data/results>/<table>.csv`` (header written once); returns the path."""
    path = (folder or results_dir()) / f"{table}.csv"
    rows_frame(rows).to_csv(path, mode="a", header=not path.exists(), index=False)
    return path


def save_table(frame: pd.DataFrame, table: str, folder: Path | None = None) -> Path:
    """Write a notebook's result ``frame`` as ``<folder or results_dir()>/<table>.csv`` in the laptop profile
    (the committed tables) and ``<table>_<profile>.csv`` in any other, so a smoke or gpu run never overwrites
    the laptop numbers; returns the path."""
    profile = current_profile()
    path = (folder or results_dir()) / (f"{table}.csv" if profile == "laptop" else f"{table}_{profile}.csv")
    frame.to_csv(path, index=False)
    return path


def recorded_table(table: str) -> pd.DataFrame | None:
    """A table recorded by an earlier run and committed (``data/results/<table>.csv`` in the repository, whatever
    ``$LDM_LAB_OUTPUT`` says), or None where it was never recorded."""
    path = REPO_ROOT / "data" / "results" / f"{table}.csv"
    return pd.read_csv(path) if path.is_file() else None
