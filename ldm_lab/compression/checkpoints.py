"""Where the ablation's weights come from: the shipped checkpoints, or, with a retraining budget (the ``gpu``
profile of notebooks 02 and 03), the same targets trained again by ``ldm-lab ship`` into a scratch folder.

    folder = weights_folder(names, device="cpu")        # None: data/checkpoints
    shipped = shipped_table(names, folder)             # name, target, step, trained on, training s
    models = {name: load_shipped(name, "cpu", folder) for name in shipped.name}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ldm_lab.checkpoints import read_manifest
from ldm_lab.paths import runs_dir
from ldm_lab.profiles import current_profile


def weights_folder(names: Sequence[str], device: str, checkpoints: str | Path | None = None,
                   retrain_budget_s: float | None = None, scratch: str = "retrained",
                   report: Callable[[str], None] = print) -> Path | None:
    """The folder to load ``names`` from: ``checkpoints`` (None: ``data/checkpoints``), or, when
    ``retrain_budget_s`` is given, ``build/runs/<scratch>`` after ``ldm-lab ship`` has trained them again there
    in that many seconds (with the current profile's step count)."""
    if not retrain_budget_s:
        return Path(checkpoints) if checkpoints else None
    from ldm_lab.shipping import ShipConfig, ship  # training machinery: only imported when retraining

    folder = runs_dir() / scratch
    ship(list(names), ShipConfig(device=device, profile=current_profile(), jobs=min(4, len(names)),
                                 budget_s=retrain_budget_s, checkpoints=folder), report=report)
    return folder


def shipped_table(names: Sequence[str], folder: Path | None = None,
                  report: Callable[[str], None] = print) -> pd.DataFrame:
    """One row per shipped model of ``names`` in ``folder``'s manifest, in the order of ``names``: name, target,
    step, where and how long it trained. Names that are not shipped are reported with the command that ships
    them; none shipped at all is an error."""
    manifest = read_manifest(folder)
    missing = [name for name in names if name not in manifest]
    where = folder or "data/checkpoints"
    if len(missing) == len(names):
        raise RuntimeError(f"none of {list(names)} is shipped in {where}; train and ship them with "
                           f"`ldm-lab ship {' '.join(names)}`")
    if missing:
        report(f"not shipped in {where}, left out below: {missing} (get them with `ldm-lab ship {' '.join(missing)}`)")
    rows = [{"name": name, "target": entry.target, "step": entry.steps, "trained on": entry.device,
             "training s": entry.training_seconds}
            for name, entry in manifest.items() if name in names]
    order = {name: index for index, name in enumerate(names)}      # the caller's order
    return pd.DataFrame(rows).sort_values("name", key=lambda column: column.map(order)).reset_index(drop=True)
