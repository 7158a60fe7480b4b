"""Layout and mask adherence on Shapes: did the model put the requested objects where it was asked to?

Shapes' ground truth is known, and its objects are painted in six saturated palette colours
(``ldm_lab.data.shapes.COLOURS``) over a grey gradient whose channels differ by at most 36 (a tint of +-18). So
two pixel tests find objects in a generated image:

* **any object**: chroma (max - min RGB channel) above ``CHROMA_THRESHOLD`` = 80, between the backgrounds' 36 and
  the least saturated palette colour's 126 (green). It accepts a model's off-palette but saturated colours;
* **an object of a given colour**: within ``COLOUR_TOLERANCE`` = 40 (Euclidean RGB) of that palette colour and
  nearer to it than to any other. 40 is half the distance of the closest palette pair (yellow-orange, 80) and 25
  below the closest any background comes to a palette colour (green, 65.5).

Measured with them:

* **Layout** (LDM §4.3.1, layout-to-image; boxes as Table 17's (l, b, c) tokens): for each requested box, the connected
  region of its colour (or of any object pixels, when the layout names only the kind) with the most pixels
  inside the box; the score is the IoU of that region's bounding box with the requested box, 0 when no region
  reaches into it. Touching objects merge into one region, and star points thinner than a pixel fade below the
  thresholds, so even the real image scores below 1 (any object: mean 0.83 at 64x64).
* **Segmentation** (LDM §4.3.2, semantic synthesis by concatenation): Shapes' segmentation encodes the *kind* of
  each pixel (0 background, 1 + kind index), not its colour, and a segmentation model chooses colours freely.
  So each generated object pixel is given the class of the nearest requested object pixel, background stays
  background, and we report per-class IoU, their mean (background included, as semantic-segmentation mIoU), and
  the object-vs-background IoU. Colour cannot tell a circle from a square: the region's *shape* is what the
  mask IoU checks.
* **Text** (the SD model cards' curve; Ho & Salimans 2022): ``guidance_sweep`` measures FID and CLIP
  score at each classifier-free guidance scale; more guidance buys prompt adherence (CLIP score) with fidelity
  and diversity (FID).

Scores of a trained model mean little alone; compare them with the same model given shuffled conditions.
Images are uint8 ``[N, 3, H, W]`` or ``[3, H, W]``, as every metric here takes them (``to_uint8``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import Tensor
from tqdm.auto import tqdm

from ldm_lab.data.shapes import COLOURS
from ldm_lab.metrics.bootstrap import mean_interval, recentred_interval
from ldm_lab.metrics.clip_score import DualEncoder, clip_scores
from ldm_lab.metrics.features import extract_features
from ldm_lab.metrics.fidelity import fid_from_features
from ldm_lab.metrics.images import check_uint8, to_uint8
from ldm_lab.names import unknown_name_error

CHROMA_THRESHOLD = 80.0   # max - min RGB channel of an object pixel (backgrounds <= 36, palette colours >= 126)
COLOUR_TOLERANCE = 40.0   # RGB distance to the nearest palette colour (see the module docstring for why 40)
PALETTE = torch.tensor(list(COLOURS.values()), dtype=torch.float32)  # [6, 3], in COLOURS' order

Box = tuple[float, float, float, float]  # (top, left, bottom, right), normalised to [0, 1]


# ------------------------------------------------------------------------------------------------- pixels
def palette_map(images: Tensor, tolerance: float = COLOUR_TOLERANCE) -> Tensor:
    """uint8 ``[N, 3, H, W]`` -> int64 ``[N, H, W]``: 1 + the index (in ``COLOURS``) of each pixel's nearest
    palette colour if it lies within ``tolerance``, else 0 (background or an undecided blend)."""
    pixels = check_uint8(images).float().permute(0, 2, 3, 1)                    # [N, H, W, 3]
    distance = torch.cdist(pixels.reshape(-1, 3), PALETTE).reshape(*pixels.shape[:3], len(PALETTE))
    nearest_distance, nearest = distance.min(-1)
    return torch.where(nearest_distance <= tolerance, nearest + 1, 0)


def object_pixels(images: Tensor, threshold: float = CHROMA_THRESHOLD) -> Tensor:
    """uint8 ``[N, 3, H, W]`` -> bool ``[N, H, W]``: pixels saturated enough to be an object, of any colour."""
    pixels = check_uint8(images).float()
    return pixels.amax(1) - pixels.amin(1) > threshold


def colour_index(colour: str) -> int:
    """1 + the palette index of ``colour``: its value in ``palette_map``."""
    if colour not in COLOURS:
        raise unknown_name_error("Shapes colour", colour, COLOURS)
    return 1 + list(COLOURS).index(colour)


# -------------------------------------------------------------------------------------------------- boxes
def box_area(box: Box) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (top, left, bottom, right) boxes; 0 when either is empty."""
    intersection = box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = box_area(a) + box_area(b) - intersection
    return intersection / union if union > 0 else 0.0


def mask_box(mask: np.ndarray) -> Box | None:
    """The normalised bounding box of a boolean mask ``[H, W]`` (pixel edges, so one pixel has a box), or
    ``None`` when the mask is empty."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    height, width = mask.shape
    return rows.min() / height, cols.min() / width, (rows.max() + 1) / height, (cols.max() + 1) / width


def box_window(box: Box, size: tuple[int, int]) -> tuple[slice, slice]:
    """The pixels (rows, columns) a normalised box covers at least partly, in an image of ``size``."""
    top, left, bottom, right = box
    height, width = size
    rows = slice(int(np.floor(top * height)), max(int(np.ceil(bottom * height)), int(np.floor(top * height)) + 1))
    cols = slice(int(np.floor(left * width)), max(int(np.ceil(right * width)), int(np.floor(left * width)) + 1))
    return rows, cols


def object_in_box(mask: np.ndarray, box: Box) -> np.ndarray:
    """The connected region (8-neighbour) of ``mask`` ``[H, W]`` with the most pixels inside ``box``; all False
    when no region reaches into it."""
    regions, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    inside = regions[box_window(box, mask.shape)]
    counts = np.bincount(inside[inside > 0])
    if len(counts) == 0:
        return np.zeros_like(mask, dtype=bool)
    return regions == int(np.argmax(counts))


def box_ious(image: Tensor, boxes: Tensor, colours: Sequence[str | None] | None = None,
             tolerance: float = COLOUR_TOLERANCE) -> Tensor:
    """Layout adherence of one image ``[3, H, W]`` (uint8) to its requested ``boxes`` ``[n, 4]`` (top, left,
    bottom, right in [0, 1]): per box, the IoU of the generated object's bounding box with the request.

    ``colours[i]`` names box i's palette colour; ``None`` (or no ``colours``) accepts any object pixel
    (``object_pixels``), for layouts that name only the kind. Returns float ``[n]`` (empty for an empty layout)."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    colours = [None] * len(boxes) if colours is None else list(colours)
    if len(colours) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(colours)} colours; give one colour (or None) per box")
    labels = palette_map(image.unsqueeze(0), tolerance)[0].numpy()
    objects = object_pixels(image.unsqueeze(0))[0].numpy()
    scores = []
    for box, colour in zip(boxes.tolist(), colours):
        mask = objects if colour is None else labels == colour_index(colour)
        found = mask_box(object_in_box(mask, box))
        scores.append(0.0 if found is None else box_iou(found, box))
    return torch.tensor(scores, dtype=torch.float32)


def layout_adherence(images: Tensor, boxes: Sequence[Tensor], colours: Sequence[Sequence[str | None]] | None = None,
                     tolerance: float = COLOUR_TOLERANCE) -> Tensor:
    """Box IoUs of a batch ``[N, 3, H, W]`` with one layout per image, concatenated over images: float
    ``[total boxes]`` (``mean_interval`` gives the mean with a confidence interval)."""
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} layouts; pass one (possibly empty) layout per image")
    colours = [None] * len(images) if colours is None else colours
    per_image = [box_ious(image, b, c, tolerance) for image, b, c in zip(check_uint8(images), boxes, colours)]
    return torch.cat(per_image) if per_image else torch.zeros(0)


# ----------------------------------------------------------------------------------------- segmentation
def predicted_classes(object_pixels: np.ndarray, segmentation: np.ndarray) -> np.ndarray:
    """The class map of a generated image ``[H, W]``: each object pixel takes the class of the nearest requested
    object pixel (colour does not say the kind), background stays 0. When nothing was requested, object pixels
    get -1, a class of their own: they are wrong, and lower the background's IoU."""
    requested = segmentation > 0
    if not requested.any():
        return np.where(object_pixels, -1, 0)
    _, (rows, cols) = ndimage.distance_transform_edt(~requested, return_indices=True)
    return np.where(object_pixels, segmentation[rows, cols], 0)


def class_ious(predicted: np.ndarray, requested: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU per class ``[num_classes]`` of two class maps; NaN for a class absent from both."""
    ious = np.full(num_classes, np.nan)
    for k in range(num_classes):
        union = np.logical_or(predicted == k, requested == k).sum()
        if union:
            ious[k] = np.logical_and(predicted == k, requested == k).sum() / union
    return ious


def mask_ious(image: Tensor, segmentation: Tensor, num_classes: int,
              threshold: float = CHROMA_THRESHOLD) -> dict[str, float | np.ndarray]:
    """Mask adherence of one image ``[3, H, W]`` (uint8) to its requested class map ``[H, W]`` (0 background,
    1 + kind index, as Shapes' ``segmentation``; ``num_classes`` counts background). Returns ``per_class``
    (IoU ``[num_classes]``, NaN where a class is in neither map), ``mean_iou`` over the classes present, and
    ``foreground_iou`` (any object vs background; 1 when both maps are empty)."""
    if tuple(segmentation.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"segmentation {list(segmentation.shape)} and image {list(image.shape[-2:])} differ in size; "
                         "resize the mask to the image with nearest-neighbour interpolation first")
    requested = segmentation.cpu().numpy()
    objects = object_pixels(image.unsqueeze(0), threshold)[0].numpy()
    per_class = class_ious(predicted_classes(objects, requested), requested, num_classes)
    foreground = class_ious(objects.astype(np.int64), (requested > 0).astype(np.int64), 2)[1]
    return {"per_class": per_class, "mean_iou": float(np.nanmean(per_class)),
            "foreground_iou": 1.0 if np.isnan(foreground) else float(foreground)}


def mask_adherence(images: Tensor, segmentations: Tensor, num_classes: int,
                   threshold: float = CHROMA_THRESHOLD) -> dict[str, Tensor]:
    """``mean_iou`` and ``foreground_iou`` per image ``[N]`` of a batch ``[N, 3, H, W]`` against class maps
    ``[N, H, W]``."""
    if len(images) != len(segmentations):
        raise ValueError(f"{len(images)} images but {len(segmentations)} masks; pass one mask per image")
    scores = [mask_ious(image, mask, num_classes, threshold) for image, mask in zip(check_uint8(images), segmentations)]
    return {key: torch.tensor([s[key] for s in scores], dtype=torch.float32) for key in ("mean_iou", "foreground_iou")}


# ---------------------------------------------------------------------------------------------- baseline
def baseline_table(scores: Mapping[str, Tensor | Sequence[float]], metric: str, num_resamples: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Mean and bootstrap 95% CI of per-sample ``scores`` under each condition, e.g. ``{"trained": ious,
    "shuffled conditions": ious_of_the_same_images_against_other_layouts}``: one row per condition."""
    rows = []
    for condition, values in scores.items():
        interval = mean_interval(np.asarray(values, dtype=float), num_resamples=num_resamples, seed=seed)
        rows.append({"condition": condition, "metric": metric, "mean": interval.estimate,
                     "mean_ci_low": interval.low, "mean_ci_high": interval.high, "num_samples": len(values)})
    return pd.DataFrame(rows)


def shuffled(conditions: Sequence) -> list:
    """Each item's condition handed to the next item (a cyclic shift): the chance baseline of an adherence
    score, with the same conditions' statistics but no link to the image."""
    return list(conditions[1:]) + list(conditions[:1])


AUTOENCODED = "real images, autoencoded"  # the report row of real images passed through the first stage


def layout_report(generated: Tensor, real: Tensor, boxes: Sequence[Tensor],
                  autoencoded: Tensor | None = None) -> pd.DataFrame:
    """Box IoU (``layout_adherence``, any object colour) of the real images (the metric's ceiling), of the
    images generated from ``boxes``, and of the same generated images against shuffled layouts (chance).
    ``autoencoded``: the real images after the model's first stage (decoder(encoder(x))), a row of their own:
    the ceiling of anything that decoder draws. ``num_samples`` counts boxes."""
    scores = {"real images": layout_adherence(real, boxes)}
    if autoencoded is not None:
        scores[AUTOENCODED] = layout_adherence(autoencoded, boxes)
    scores |= {"generated": layout_adherence(generated, boxes),
               "generated, shuffled layouts": layout_adherence(generated, shuffled(boxes))}
    return baseline_table(scores, "box IoU")


def mask_report(generated: Tensor, real: Tensor, segmentations: Tensor, num_classes: int,
                autoencoded: Tensor | None = None) -> pd.DataFrame:
    """``mask_adherence``'s foreground IoU and mean IoU, as ``layout_report``: real images (and, given, the real
    images through the first stage), generated, and generated against shuffled masks."""
    scores = {"real images": mask_adherence(real, segmentations, num_classes)}
    if autoencoded is not None:
        scores[AUTOENCODED] = mask_adherence(autoencoded, segmentations, num_classes)
    scores |= {"generated": mask_adherence(generated, segmentations, num_classes),
               "generated, shuffled masks": mask_adherence(generated, segmentations.roll(-1, 0),  # as shuffled()
                                                           num_classes)}
    return pd.concat([baseline_table({name: s[metric] for name, s in scores.items()}, name)
                      for metric, name in (("foreground_iou", "object IoU"), ("mean_iou", "mean IoU"))],
                     ignore_index=True)


# --------------------------------------------------------------------------------------------------- text
Draw = Callable[[Sequence[str], float], Tensor]  # (prompts, guidance scale) -> images [N, C, H, W] in [-1, 1]


def guidance_point(images: Tensor, prompts: Sequence[str], real_features: Tensor, encoder: DualEncoder,
                   feature_space: str = "lab-clip", num_resamples: int = 200, seed: int = 0) -> dict:
    """FID against ``real_features`` and CLIP score of one generated set (uint8), each with a bootstrap 95% CI.
    FID's is re-centred (``recentred_interval``): resampling repeats images, which lifts every resampled FID
    above the estimate; the spread is kept and the shift dropped, so the interval contains the estimate."""
    generated = extract_features(images, feature_space)
    fid = recentred_interval(lambda r, g: fid_from_features(real_features[r], generated[g]),
                             (len(real_features), len(generated)), num_resamples, seed=seed)
    clip = mean_interval(clip_scores(images, prompts, encoder).numpy(), num_resamples=num_resamples, seed=seed)
    return {"fid": fid.estimate, "fid_ci_low": fid.low, "fid_ci_high": fid.high, "clip_score": clip.estimate,
            "clip_score_ci_low": clip.low, "clip_score_ci_high": clip.high, "num_samples": len(images),
            "num_real": len(real_features), "feature_space": feature_space, "clip_encoder": encoder.name}


def guidance_sweep(draw: Draw, prompts: Sequence[str], real: Tensor, scales: Sequence[float],
                   encoder: DualEncoder, *, feature_space: str = "lab-clip", num_resamples: int = 200,
                   seed: int = 0) -> pd.DataFrame:
    """One row per guidance scale: FID (``feature_space``) and CLIP score (``encoder``) of ``draw(prompts,
    scale)`` against the uint8 ``real`` images, with bootstrap CIs. ``draw`` should reuse one seed for every
    scale, so that the scales differ in guidance only. Compare rows at equal ``num_samples`` (FID's bias)."""
    real_features = extract_features(real, feature_space)
    rows = []
    for scale in tqdm(scales, desc="guidance scales"):
        images = to_uint8(draw(prompts, scale).cpu())
        point = guidance_point(images, prompts, real_features, encoder, feature_space, num_resamples, seed)
        rows.append({"guidance_scale": scale, **point})
    return pd.DataFrame(rows)
