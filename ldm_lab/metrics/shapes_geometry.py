"""Geometry of the objects in generated Shapes images: are they cut by the frame, are they distorted? The measures
of SDXL's crop conditioning (§2.2: random crops teach a model to cut objects off) and of its aspect buckets (§2.3:
a square model asked for another aspect ratio stretches or crops what it draws).

Objects are found by colour, as the adherence measures find them (``ldm_lab.metrics.adherence.palette_map``: each
pixel within 40 of a palette colour, nearest first), then split into connected regions (8-connected) of one colour;
regions under ``MIN_AREA`` pixels are specks. Touching objects of one colour merge into one region.

* **Cut by the frame**: a region with at least ``MIN_FRAME_PIXELS`` pixels on the image's outermost rows or columns.
  Shapes never cuts an uncropped object (its centres keep a radius from the edges), but a shape may be tangent to
  the edge, where anti-aliasing leaves a pixel or so; two are needed.
* **Stretch**: sqrt(var(columns) / var(rows)) of the region's pixels. Circles, squares, triangles and stars are
  regular polygons, whose second moments are isotropic at every rotation, so their stretch is 1; an image
  stretched by s horizontally stretches them by s. (Diamonds are rhombi, 0.6 as wide as tall before rotation:
  measure on prompts of the other kinds.) Reported as log2 stretch (0: undistorted, +1: twice as wide as tall),
  on objects not cut by the frame.

Intervals resample *images* (objects of one image are not independent draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from torch import Tensor

from ldm_lab.data.shapes import COLOURS
from ldm_lab.metrics.adherence import COLOUR_TOLERANCE, palette_map
from ldm_lab.metrics.bootstrap import Interval, bootstrap_interval
from ldm_lab.metrics.images import check_uint8

MIN_AREA = 6            # pixels: smaller same-colour regions are specks, not objects
MIN_FRAME_PIXELS = 2    # pixels on the frame that make an object "cut" (a tangent shape leaves about one)
EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


@dataclass(frozen=True)
class FoundObject:
    """One object found in an image by colour."""

    colour: str                          # its palette colour (a key of ``ldm_lab.data.shapes.COLOURS``)
    area: int                            # pixels
    box: tuple[int, int, int, int]       # (top, left, bottom, right) in pixels, bottom and right exclusive
    frame_pixels: int                    # its pixels on the image's outermost rows and columns
    stretch: float                       # sqrt(var(columns) / var(rows)) of its pixels: 1 for regular shapes

    @property
    def cut(self) -> bool:
        """Cut by the frame: it reaches the edge over more than a tangent pixel."""
        return self.frame_pixels >= MIN_FRAME_PIXELS


def frame_mask(size: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: the outermost rows and columns."""
    mask = np.zeros(size, bool)
    mask[[0, -1], :] = mask[:, [0, -1]] = True
    return mask


def region_object(region: np.ndarray, colour: str, frame: np.ndarray) -> FoundObject:
    """The measurements of one region (bool [H, W])."""
    rows, cols = np.nonzero(region)
    stretch = float(np.sqrt(cols.var() / rows.var())) if rows.var() > 0 and cols.var() > 0 else float("nan")
    return FoundObject(colour, int(region.sum()),
                       (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1),
                       int((region & frame).sum()), stretch)


def find_objects(image: Tensor, tolerance: float = COLOUR_TOLERANCE, min_area: int = MIN_AREA) -> list[FoundObject]:
    """The objects of one uint8 image ``[3, H, W]``: connected regions of one palette colour, largest first."""
    colours = palette_map(check_uint8(image[None]), tolerance)[0].numpy()    # [H, W]: 0 or 1 + palette index
    frame, names, found = frame_mask(colours.shape), list(COLOURS), []
    for index in np.unique(colours[colours > 0]):
        labels, count = ndimage.label(colours == index, structure=EIGHT_CONNECTED)
        for label in range(1, count + 1):
            region = labels == label
            if region.sum() >= min_area:
                found.append(region_object(region, names[index - 1], frame))
    return sorted(found, key=lambda o: -o.area)


def objects_per_image(images: Tensor, tolerance: float = COLOUR_TOLERANCE,
                      min_area: int = MIN_AREA) -> list[list[FoundObject]]:
    """``find_objects`` for each uint8 image of ``[N, 3, H, W]``."""
    return [find_objects(image, tolerance, min_area) for image in check_uint8(images)]


def _clustered_interval(per_image: Sequence[np.ndarray], statistic: str, num_resamples: int, seed: int) -> Interval:
    """Bootstrap over images of the mean ("mean") of per-object values pooled over the resampled images."""
    usable = [values for values in per_image if len(values)]
    if len(usable) < 2:
        raise ValueError(f"only {len(usable)} image(s) hold an object to measure; draw more images (at least 2, "
                         "better 50+), or check that they show Shapes' palette colours.")

    def pooled_mean(index: np.ndarray) -> float:
        values = np.concatenate([usable[i] for i in index])
        return float(values.mean()) if statistic == "mean" else float(np.abs(values).mean())

    return bootstrap_interval(pooled_mean, (len(usable),), num_resamples=num_resamples, seed=seed)


def cut_off_fraction(images: Tensor | Sequence[Sequence[FoundObject]], num_resamples: int = 1000,
                     seed: int = 0) -> Interval:
    """The fraction of objects cut by the frame, pooled over the images, with a bootstrap interval over images.
    Takes uint8 images ``[N, 3, H, W]`` or their ``objects_per_image``."""
    objects = objects_per_image(images) if isinstance(images, Tensor) else images
    return _clustered_interval([np.array([o.cut for o in found], float) for found in objects], "mean",
                               num_resamples, seed)


def log_stretches(objects: Sequence[Sequence[FoundObject]]) -> list[np.ndarray]:
    """Per image: log2 stretch of each object not cut by the frame (cut objects lose part of their extent)."""
    return [np.array([np.log2(o.stretch) for o in found if not o.cut and np.isfinite(o.stretch)]) for found in objects]


def distortion(images: Tensor | Sequence[Sequence[FoundObject]], num_resamples: int = 1000,
               seed: int = 0) -> dict[str, Interval]:
    """Object distortion with bootstrap intervals over images: ``log2_stretch``, the mean signed log2 stretch
    (> 0: objects wider than tall), and ``abs_log2_stretch``, the mean distortion either way (0: none)."""
    per_image = log_stretches(objects_per_image(images) if isinstance(images, Tensor) else images)
    return {"log2_stretch": _clustered_interval(per_image, "mean", num_resamples, seed),
            "abs_log2_stretch": _clustered_interval(per_image, "abs", num_resamples, seed)}


def geometry_row(images: Tensor, num_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """One result row: cut-off fraction and distortion with their ``_ci_low`` / ``_ci_high``, and the counts."""
    objects = objects_per_image(images)
    row: dict[str, float] = {}
    for name, interval in {"cut_off_fraction": cut_off_fraction(objects, num_resamples, seed),
                           **distortion(objects, num_resamples, seed)}.items():
        row.update({name: interval.estimate, f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high})
    row.update(num_images=len(objects), num_objects=sum(len(found) for found in objects))
    return row
