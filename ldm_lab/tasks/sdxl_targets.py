"""The training targets of notebook 06: SDXL's training tricks as ablations of lab-sdxl (Podell et al. 2023, §2.2-2.5).

Every variant is lab-sdxl's target with one thing changed by ``dataclasses.replace`` (its dataset, or its model
config), trained for the same steps at the same batch size, so the variants of one experiment cost the same:

* size conditioning, Tab. 2 in miniature: ``lab-sdxl-large-only`` (small originals discarded), ``lab-sdxl-no-size``
  (all data, original size fixed to the target size) and ``lab-sdxl-size`` (all data, size-conditioned);
* crop conditioning: ``lab-sdxl-size`` (crops recorded) against ``lab-sdxl-no-crop`` (crop fixed to (0, 0));
* aspect buckets (§2.3): ``lab-sdxl-buckets`` against ``lab-sdxl-square`` (square originals only) and
  ``lab-sdxl-centre-crop`` (every original centre-cropped to 64²); all three may be sampled at any bucket's size;
* the refiner (§2.5): ``lab-sdxl-refiner``, trained on timesteps [0, 200) only, with a detail score as its aesthetic
  score; ``ldm_lab.tasks.refiner.generate_with_refiner`` hands it the base's latent at the switch.

Each trains on ``lab-shapes-autoencoder``'s first stage, like lab-sdxl:
``ldm-lab train lab-sdxl-no-size --first-stage lab-shapes-autoencoder --out runs/lab-sdxl-no-size``.
"""

from __future__ import annotations

from dataclasses import replace

from torch.utils.data import Dataset

from ldm_lab.data import DATASETS, DatasetSource
from ldm_lab.metrics.images import to_uint8
from ldm_lab.metrics.sharpness import detail_score
from ldm_lab.models.sdxl import LAB_SDXL_REFINER, REFINER_TIMESTEPS
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.refiner import LowNoiseTask
from ldm_lab.tasks.targets import TARGETS, DiffusionTarget

SCORE_KEY = "aesthetic_score"   # the batch key the refiner's score condition reads


class DetailScored(Dataset):
    """``data``'s items with ``aesthetic_score`` = the detail score of their image (the lab refiner's stand-in for
    SDXL's aesthetic score, ``ldm_lab.metrics.sharpness.detail_score``)."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.data[index])
        item[SCORE_KEY] = float(detail_score(to_uint8(item["image"][None]))[0])
        return item


_MULTISCALE = DATASETS["shapes_multiscale"]
DATASETS["shapes_multiscale_scored"] = replace(
    _MULTISCALE, build=lambda split, size: DetailScored(_MULTISCALE.build(split, size)))


def _variant(name: str, description: str, dataset: str | None = None, task: DiffusionTask | None = None,
             **model_changes) -> DiffusionTarget:
    """lab-sdxl with another name and description, and another dataset, task and/or model config fields."""
    base = TARGETS["lab-sdxl"]
    return replace(base, name=name, description=description, dataset=dataset or base.dataset,
                   task=task or base.task, model=replace(base.model, **model_changes))


SDXL_ABLATIONS: tuple[DiffusionTarget, ...] = (
    _variant("lab-sdxl-large-only", "lab-sdxl trained only on originals at least as large as 64x64 (SDXL Tab. 2, "
             "'512² only': the small ones discarded, 43 % of the data)", "shapes_multiscale_large"),
    _variant("lab-sdxl-no-size", "lab-sdxl on all data without size conditioning (SDXL Tab. 2): original_size "
             "fixed to the target size, so the input is constant", "shapes_multiscale_no_size"),
    _variant("lab-sdxl-size", "lab-sdxl on all data with size and crop conditioning (SDXL Tab. 2, and the "
             "crop-conditioned arm of §2.2), the same steps as its ablations"),
    _variant("lab-sdxl-no-crop", "lab-sdxl on random crops without crop conditioning (SDXL §2.2): crop_top_left "
             "fixed to (0, 0)", "shapes_multiscale_no_crop"),
    _variant("lab-sdxl-buckets", "lab-sdxl on multi-aspect originals, each at its nearest of 5 aspect buckets "
             "(128x32 ... 32x128, about 64² pixels), batches from one bucket, the bucket as target size (SDXL §2.3)",
             "shapes_buckets", multi_aspect=True),
    _variant("lab-sdxl-square", "lab-sdxl on square originals only, at 64x64 (the square-only baseline of "
             "SDXL §2.3); samples at any bucket's size", "shapes_square", multi_aspect=True),
    _variant("lab-sdxl-centre-crop", "lab-sdxl on the multi-aspect originals of lab-sdxl-buckets, resized to "
             "cover 64x64 and centre-cropped (the pre-SDXL pipeline); samples at any bucket's size",
             "shapes_centre_crop", multi_aspect=True),
    _variant("lab-sdxl-refiner", "tiny SDXL refiner: lab-sdxl's networks with one text tower, size/crop and a "
             "detail score, trained only on the 200 lowest-noise timesteps (SDXL §2.5)",
             "shapes_multiscale_scored", LowNoiseTask(guidance_scale=TARGETS["lab-sdxl"].task.guidance_scale),
             preset=LAB_SDXL_REFINER, timestep_range=REFINER_TIMESTEPS),
)

TARGETS.update({target.name: target for target in SDXL_ABLATIONS})
