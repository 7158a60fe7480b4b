"""The training-data variants of SDXL's micro-conditioning ablations (Podell et al. 2023, §2.2, Tab. 2), on
``shapes_multiscale`` (scenes photographed at 0.25x-2x the training size, resized and cropped):

* :class:`LargeOriginals` — discard the small originals, as pre-SDXL pipelines did (Tab. 2, "512² only": SDXL's
  ImageNet run kept only images with both sides >= 512 pixels, the training size);
* :class:`HiddenConditions` — all data, but the model is not told the original size (Tab. 2, "w/o size cond.")
  or the crop: the condition is fixed, ``original_size`` to the item's ``target_size`` and ``crop_top_left`` to
  (0, 0), which is what sampling passes by default. A constant input carries no information, so the network is the
  same as the conditioned one and only what it can learn differs (SDXL's unconditioned model simply lacks the
  embedding; a fixed input is the same model with a constant bias added to its timestep embedding);
* :class:`DetailScored` — the items with a detail score as their ``aesthetic_score``, the lab refiner's stand-in
  for the LAION aesthetic score SDXL's refiner is conditioned on (§2.5).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from ldm_lab.data.shapes import ShapesDataset
from ldm_lab.pixels import detail_score, to_uint8

HIDEABLE = ("original_size", "crop_top_left")  # the micro-conditions HiddenConditions can fix
SCORE_KEY = "aesthetic_score"   # the batch key the refiner's score condition reads


class LargeOriginals(Dataset):
    """The items of a Shapes dataset whose original's shorter side is at least ``min_side`` pixels (default: the
    training size's shorter side, so no item was upscaled). Item ``i`` is the ``i``-th kept item of ``data``."""

    def __init__(self, data: ShapesDataset, min_side: int | None = None) -> None:
        self.data = data
        self.min_side = min(data.config.size) if min_side is None else min_side
        self.indices = [i for i in range(len(data)) if min(data.view(i)[0]) >= self.min_side]  # ~0.2 ms an item
        if not self.indices:
            raise ValueError(f"no original of this dataset has a shorter side >= {self.min_side} pixels; lower "
                             "min_side or widen ShapesConfig.original_scale.")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.data[self.indices[index]]


class HiddenConditions(Dataset):
    """``data`` with micro-conditions fixed so the model cannot learn them: ``original_size`` := ``target_size``,
    ``crop_top_left`` := (0, 0). The image is unchanged (still resized and cropped), so the view applies as well to
    items whose image was replaced by its cached latent: a latent cache encodes ``data`` once and serves this view
    and the unhidden dataset alike (``ldm_lab.tasks.runs``)."""

    def __init__(self, data: Dataset, hide: Sequence[str]) -> None:
        unknown = set(hide) - set(HIDEABLE)
        if unknown or not hide:
            raise ValueError(f"hide some of {HIDEABLE}, not {sorted(unknown) or 'nothing'}")
        self.data, self.hide = data, tuple(hide)

    def over(self, data: Dataset) -> HiddenConditions:
        """The same view over other items (``data``'s latents cached, say)."""
        return HiddenConditions(data, self.hide)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.data[index])
        if "original_size" in self.hide:
            item["original_size"] = tuple(item["target_size"])
        if "crop_top_left" in self.hide:
            item["crop_top_left"] = (0, 0)
        return item


class DetailScored(Dataset):
    """``data``'s items with ``aesthetic_score`` = the detail score of their image (the lab refiner's stand-in for
    SDXL's aesthetic score, ``ldm_lab.pixels.detail_score``)."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.data[index])
        item[SCORE_KEY] = float(detail_score(to_uint8(item["image"][None]))[0])
        return item
