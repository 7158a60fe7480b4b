"""Shipping the lab models: ``ldm-lab ship`` trains them (first stages first, several at a time, in a time
budget) and writes each one's EMA weights as fp16 safetensors into ``data/checkpoints/`` with a manifest entry;
``load_shipped`` gives a shipped model back.

    from ldm_lab.shipping import ShipConfig, load_shipped, ship

    ship(["lab-emoji"], ShipConfig(device="cuda", profile="gpu", jobs=4, budget_s=600))
    model = load_shipped("lab-emoji")   # LatentDiffusion in eval mode, its first stage from lab-autoencoder's file
    run = load_trained("lab-emoji")     # the same as a Run; also takes run directories (ldm_lab.tasks.load_run)

Modules: :mod:`.plan` (phases and time limits), :mod:`.jobs` (training subprocesses), :mod:`.export` (run ->
shipped file + manifest entry), :mod:`.load` (shipped file -> model), :mod:`.ship` (the whole command).
"""

from ldm_lab.shipping.load import (inference_model, inference_weights, is_shipped_name, load_shipped, load_trained,
                                  shipped_run)
from ldm_lab.shipping.plan import ShipConfig, plan_phases, with_dependencies
from ldm_lab.shipping.ship import ShipRow, ship, summary_table

__all__ = ["ShipConfig", "ShipRow", "inference_model", "inference_weights", "is_shipped_name", "load_shipped",
           "load_trained", "plan_phases", "ship", "shipped_run", "summary_table", "with_dependencies"]
