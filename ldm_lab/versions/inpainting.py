"""Inpainting measured (notebook 05): the 9-channel inpainting model against mask blending with the text model it
was fine-tuned from, on held-out emoji with random rectangular masks (``ldm_lab.tasks.inpainting``).

Two numbers per method, each with a 95 % interval over the images:

* **FID of the masked region**: the masked rectangle of every result (pasted into its original), resized to the
  image size, against the same rectangles of the real images (lab-clip features);
* **seam energy**: the mean squared colour gradient on the mask's boundary (``seam_energy``), as a ratio to the
  real images' own gradient energy on the same band (1: no seam; above 1: a visible edge).

Beside them, ``real_region_row``: other real emoji under the same masks, the floor of the region FID at this N.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.metrics import bootstrap_interval, extract_features, to_uint8
from ldm_lab.quality.benchmark import FEATURE_SPACE, recentred_fid
from ldm_lab.tasks.inpainting import paste, seam_energy

Fill = Callable[[Tensor, Tensor, Sequence[str]], Tensor]  # (images, masks, prompts) -> images in [-1, 1]


def masked_crops(images: Tensor, masks: Tensor) -> Tensor:
    """Each image's masked rectangle (the bounding box of its mask), resized to the image's size."""
    size = images.shape[-2:]
    crops = []
    for image, mask in zip(images, masks, strict=True):
        rows, cols = torch.nonzero(mask[0].sum(1)), torch.nonzero(mask[0].sum(0))
        if len(rows) == 0:
            raise ValueError("a mask is empty: every mask must cover at least one pixel to inpaint.")
        box = image[:, int(rows.min()): int(rows.max()) + 1, int(cols.min()): int(cols.max()) + 1]
        crops.append(F.interpolate(box[None], size=size, mode="bilinear", align_corners=False)[0])
    return torch.stack(crops).clamp(-1, 1)


def inpainting_table(methods: Mapping[str, Fill], images: Tensor, masks: Tensor, captions: Sequence[str], *,
                     num_resamples: int = 200, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """One row per method: FID of the masked region and the seam-energy ratio, each with its 95 % interval, and
    seconds per image; and each method's results pasted into the originals."""
    real_crops = extract_features(to_uint8(masked_crops(images, masks)), FEATURE_SPACE)
    real_seams = seam_energy(images, masks)
    rows, results = [], {}
    for name, fill in methods.items():
        start = time.perf_counter()
        results[name] = paste(fill(images, masks, captions).cpu(), images, masks)
        seconds = (time.perf_counter() - start) / len(images)
        rows.append({"method": name, **_scores(results[name], masks, real_crops, real_seams, num_resamples, seed),
                     "seconds_per_image": seconds, "num_images": len(images)})
    return pd.DataFrame(rows), results


def real_region_row(reference: Tensor, images: Tensor, masks: Tensor, *, num_resamples: int = 200,
                    seed: int = 0) -> dict:
    """``inpainting_table``'s row for other real images (``reference``, as many as ``images``), unpasted: the
    region FID two sets of real emoji have at this N under the same masks, and their seam ratio (their own
    gradients on the band against the held-out images')."""
    real_crops = extract_features(to_uint8(masked_crops(images, masks)), FEATURE_SPACE)
    return {"method": "real vs real", **_scores(reference, masks, real_crops, seam_energy(images, masks),
                                                num_resamples, seed), "num_images": len(reference)}


def _scores(results: Tensor, masks: Tensor, real_crops: Tensor, real_seams: Tensor, num_resamples: int,
            seed: int) -> dict[str, float]:
    crops = extract_features(to_uint8(masked_crops(results, masks)), FEATURE_SPACE)
    fid = recentred_fid(real_crops, crops, num_resamples, seed)
    seams = seam_energy(results, masks)
    # a ratio of means over the same images (a band on a white background has almost no gradient of its own)
    ratio = bootstrap_interval(lambda i: float(seams[i].mean() / real_seams[i].mean()), (len(seams),),
                               num_resamples=num_resamples, seed=seed)
    return {"region_fid": fid.estimate, "region_fid_ci_low": fid.low, "region_fid_ci_high": fid.high,
            "seam_ratio": float(seams.mean() / real_seams.mean()), "seam_ratio_ci_low": ratio.low,
            "seam_ratio_ci_high": ratio.high}
