"""Result rows: every number we report carries what it was measured in and on.

A ``ResultRecord`` holds a metric value with its feature space, sample count, profile, device and git commit;
``to_frame`` turns records into a pandas table and ``append_csv`` adds them to ``data/results/<table>.csv``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ldm_lab.device import default_device
from ldm_lab.metrics.fidelity import FidelityResult
from ldm_lab.paths import git_commit, results_dir
from ldm_lab.profiles import current_profile


@dataclass(frozen=True)
class ResultRecord:
    """One measured number and everything needed to compare it fairly with another."""
    metric: str                  # "fid", "kid", "clip_score", "psnr", ...
    value: float
    feature_space: str           # "fmnist-classifier", "lab-clip", "inception-v3-compat"; "pixels" for PSNR/SSIM
    num_samples: int             # FID is biased at small N: compare only rows with equal num_samples
    experiment: str = ""         # which table or figure it belongs to, e.g. "08_sample_size"
    settings: str = ""           # what varied, e.g. "sampler=ddim steps=50 guidance=7.5"
    value_ci_low: float | None = None   # bootstrap interval of value (ldm_lab.metrics.bootstrap), when computed
    value_ci_high: float | None = None
    profile: str = field(default_factory=current_profile)
    device: str = field(default_factory=lambda: str(default_device()))
    git_commit: str = field(default_factory=git_commit)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def to_frame(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """One row per record, one column per field."""
    return pd.DataFrame([dataclasses.asdict(r) for r in records],
                        columns=[f.name for f in dataclasses.fields(ResultRecord)])


def fidelity_records(result: FidelityResult, **context) -> list[ResultRecord]:
    """One record per number of a ``FidelityResult``; ``context`` fills the other fields (``experiment=...``)."""
    return [ResultRecord(metric=metric, value=getattr(result, metric), feature_space=result.feature_space,
                         num_samples=result.num_generated, **context)
            for metric in ("fid", "kid", "kid_std", "precision", "recall")]


def append_csv(records: Sequence[ResultRecord], table: str, folder: Path | None = None) -> Path:
    """Append ``records`` to ``<folder or data/results>/<table>.csv`` (header written once); returns the path."""
    path = (folder or results_dir()) / f"{table}.csv"
    to_frame(records).to_csv(path, mode="a", header=not path.exists(), index=False)
    return path


def read_csv(table: str, folder: Path | None = None) -> pd.DataFrame:
    """The rows of ``data/results/<table>.csv``."""
    return pd.read_csv((folder or results_dir()) / f"{table}.csv")
