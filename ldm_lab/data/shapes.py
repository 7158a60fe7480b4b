"""Shapes: a procedural dataset of coloured shapes whose ground truth is known.

A *scene* is a few shapes in resolution-free coordinates (rows and columns in [0, 1], radii as a fraction of the
shorter side) over a gradient background. Rendering it at any (height, width) is anti-aliased by supersampling.
Every item carries a caption ("a small red circle left of a large blue square"), a class (the kind of the largest
shape), boxes, a segmentation map and, for SDXL's micro-conditioning (Podell et al. 2023, §2.2), the size it was
"photographed" at and the crop taken: the scene is rendered at ``original_size``, resized so it covers the target
size, and cropped at ``crop_top_left``. Small originals therefore really look upscaled, as in SDXL's data.

Conventions: sizes are (height, width), crops (top, left), boxes (top, left, bottom, right) normalised to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.path import Path as PolygonPath
from PIL import Image
from torch.utils.data import Dataset

from ldm_lab.names import unknown_name_error

KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38), "green": (34, 160, 60), "blue": (37, 90, 225),
    "yellow": (245, 205, 25), "purple": (145, 60, 200), "orange": (245, 125, 20)}
SIZES: dict[str, tuple[float, float]] = {  # size word -> range of the radius, as a fraction of the shorter side
    "small": (0.08, 0.12), "medium": (0.13, 0.18), "large": (0.19, 0.26)}


@dataclass(frozen=True)
class Shape:
    kind: str                     # one of KINDS
    colour: str                   # a key of COLOURS
    size: str                     # a key of SIZES
    center: tuple[float, float]   # (row, column) in [0, 1]
    radius: float                 # circumradius, as a fraction of the shorter image side
    rotation: float               # radians


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]                 # painted in order: later shapes cover earlier ones
    background: tuple[tuple[int, int, int], tuple[int, int, int]]  # gradient from this colour to that
    gradient_angle: float                     # direction of the background gradient, radians


@dataclass(frozen=True)
class Rendering:
    image: np.ndarray       # uint8 [H, W, 3]
    instances: np.ndarray   # int64 [H, W]: 0 background, i + 1 for scene.shapes[i] (majority of each pixel)


# ------------------------------------------------------------------------------------------------- sampling
def sample_scene(rng: np.random.Generator, max_shapes: int = 3, min_shapes: int = 1) -> Scene:
    """Draw a scene: shapes overlap at most partly (centres at least 0.7 x the sum of radii apart)."""
    count = int(rng.integers(min_shapes, max_shapes + 1))
    shapes: list[Shape] = []
    while len(shapes) < count:
        size = str(rng.choice(list(SIZES)))
        radius = float(rng.uniform(*SIZES[size]))
        center = (float(rng.uniform(radius, 1 - radius)), float(rng.uniform(radius, 1 - radius)))
        if any(np.hypot(center[0] - s.center[0], center[1] - s.center[1]) < 0.7 * (radius + s.radius)
               for s in shapes):
            continue
        shapes.append(Shape(kind=str(rng.choice(KINDS)), colour=str(rng.choice(list(COLOURS))), size=size,
                            center=center, radius=radius, rotation=float(rng.uniform(0, 2 * np.pi))))
    grey = rng.uniform(40, 215, size=2)
    tint = rng.uniform(-18, 18, size=(2, 3))
    ends = np.clip(grey[:, None] + tint, 0, 255).round().astype(int)
    return Scene(shapes=tuple(shapes), background=(tuple(ends[0].tolist()), tuple(ends[1].tolist())),
                 gradient_angle=float(rng.uniform(0, 2 * np.pi)))


# ------------------------------------------------------------------------------------------------ geometry
def _vertices(shape: Shape) -> np.ndarray | None:
    """Polygon vertices (row, column offsets in units of the radius), or ``None`` for a circle."""
    def ring(n: int, radii: np.ndarray | float = 1.0, offset: float = 0.0) -> np.ndarray:
        angles = shape.rotation + offset + np.arange(n) * 2 * np.pi / n
        return np.stack([np.sin(angles), np.cos(angles)], -1) * np.reshape(radii, (-1, 1))

    if shape.kind == "circle":
        return None
    if shape.kind == "square":
        return ring(4, offset=np.pi / 4)
    if shape.kind == "triangle":
        return ring(3, offset=-np.pi / 2)
    if shape.kind == "diamond":
        return ring(4) * np.array([1.0, 0.6])  # a rhombus: taller than wide before rotation
    if shape.kind == "star":
        return ring(10, radii=np.tile([1.0, 0.45], 5), offset=-np.pi / 2)
    raise unknown_name_error("shape kind", shape.kind, KINDS)


def _extent(shape: Shape, size: tuple[int, int]) -> np.ndarray:
    """The shape's outline in pixels: [N, 2] (row, column) points whose bounding box is the shape's."""
    height, width = size
    radius_px = shape.radius * min(size)
    center = np.array([shape.center[0] * height, shape.center[1] * width])
    vertices = _vertices(shape)
    if vertices is None:
        vertices = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], float)  # a circle's extremes
    return center + vertices * radius_px


def _inside(shape: Shape, size: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Boolean mask of the sample points (pixel coordinates) that fall inside the shape."""
    height, width = size
    dy, dx = rows - shape.center[0] * height, cols - shape.center[1] * width
    radius_px = shape.radius * min(size)
    vertices = _vertices(shape)
    if vertices is None:
        return dy**2 + dx**2 <= radius_px**2
    polygon = PolygonPath(vertices * radius_px)
    return polygon.contains_points(np.stack([dy.ravel(), dx.ravel()], -1)).reshape(dy.shape)


def box(shape: Shape, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The shape's (top, left, bottom, right) box in pixels of an image of ``size``, clipped to it."""
    points = _extent(shape, size)
    top, left = np.maximum(points.min(0), 0)
    bottom, right = np.minimum(points.max(0), size)
    return float(top), float(left), float(bottom), float(right)


# ----------------------------------------------------------------------------------------------- rendering
def _background(scene: Scene, size: tuple[int, int]) -> np.ndarray:
    """The gradient at the pixel centres, float [H, W, 3] (smooth, so it needs no supersampling)."""
    rows = (np.arange(size[0])[:, None] + 0.5) / size[0] - 0.5
    cols = (np.arange(size[1])[None, :] + 0.5) / size[1] - 0.5
    position = rows * np.sin(scene.gradient_angle) + cols * np.cos(scene.gradient_angle)
    mix = np.clip(position / np.sqrt(2) + 0.5, 0, 1)[..., None]
    start, end = (np.asarray(c, np.float32) for c in scene.background)
    return start * (1 - mix) + end * mix


def render(scene: Scene, size: tuple[int, int], supersample: int = 4) -> Rendering:
    """Render ``scene`` at ``size`` (height, width), anti-aliased by ``supersample``² samples per pixel."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"render size must be positive (height, width), not {size}")
    s = supersample
    owner = np.zeros((height * s, width * s), np.uint8)  # which shape paints each sample (0: background)
    for index, shape in enumerate(scene.shapes, start=1):
        top, left, bottom, right = box(shape, size)
        r0, r1 = int(np.floor(top * s)), int(np.ceil(bottom * s))
        c0, c1 = int(np.floor(left * s)), int(np.ceil(right * s))
        if r1 > r0 and c1 > c0:  # test only the samples within the shape's box
            rows, cols = np.meshgrid((np.arange(r0, r1) + 0.5) / s, (np.arange(c0, c1) + 0.5) / s, indexing="ij")
            owner[r0:r1, c0:c1][_inside(shape, size, rows, cols)] = index
    # coverage[k]: the fraction of each pixel's samples painted by k (0: background) — the box filter
    coverage = np.stack([(owner == k).reshape(height, s, width, s).mean((1, 3), dtype=np.float32)
                         for k in range(len(scene.shapes) + 1)])
    image = coverage[0, ..., None] * _background(scene, size)
    for k, shape in enumerate(scene.shapes, start=1):
        image += coverage[k, ..., None] * np.asarray(COLOURS[shape.colour], np.float32)
    return Rendering(image=np.round(image).astype(np.uint8), instances=coverage.argmax(0).astype(np.int64))


# ---------------------------------------------------------------------------------------------- captions
def describe(shape: Shape) -> str:
    return f"a {shape.size} {shape.colour} {shape.kind}"


def _relation(a: Shape, b: Shape) -> str:
    """Where ``a`` is relative to ``b``, along the axis on which they differ most."""
    d_row, d_col = a.center[0] - b.center[0], a.center[1] - b.center[1]
    if abs(d_col) >= abs(d_row):
        return "left of" if d_col < 0 else "right of"
    return "above" if d_row < 0 else "below"


def caption(scene: Scene) -> str:
    """One shape: "a large red circle"; two: "a small red circle left of a medium blue square"; more: listed
    from left to right."""
    shapes = scene.shapes
    if len(shapes) == 1:
        return describe(shapes[0])
    if len(shapes) == 2:
        return f"{describe(shapes[0])} {_relation(shapes[0], shapes[1])} {describe(shapes[1])}"
    ordered = [describe(s) for s in sorted(shapes, key=lambda s: s.center[1])]
    return f"{', '.join(ordered[:-1])} and {ordered[-1]}, from left to right"


def label(scene: Scene) -> int:
    """The scene's class: the kind of its largest shape (an index into ``KINDS``)."""
    return KINDS.index(max(scene.shapes, key=lambda s: s.radius).kind)


# ----------------------------------------------------------------------------------- size and crop (SDXL)
def covering_size(original: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """Resize ``original`` keeping its aspect so that it just covers ``target`` (SDXL resizes, then crops)."""
    scale = max(target[0] / original[0], target[1] / original[1])
    return max(target[0], round(original[0] * scale)), max(target[1], round(original[1] * scale))


def crop_corner(original: tuple[int, int], target: tuple[int, int], rng: np.random.Generator | None
                ) -> tuple[int, int]:
    """Where SDXL's crop of ``target`` falls in ``original`` resized to cover it: (top, left), drawn uniformly with
    ``rng``, or centred when ``rng`` is None."""
    resized = covering_size(original, target)
    slack = (resized[0] - target[0], resized[1] - target[1])
    if rng is None:
        return slack[0] // 2, slack[1] // 2
    return int(rng.integers(0, slack[0] + 1)), int(rng.integers(0, slack[1] + 1))


def render_view(scene: Scene, original_size: tuple[int, int], target_size: tuple[int, int],
                crop_top_left: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Photograph ``scene`` at ``original_size``, resize it to cover ``target_size``, crop at ``crop_top_left``.

    Returns the uint8 image [h, w, 3] and the instance map [h, w] of the crop (the instance map is rendered at
    the resized size directly, so it is sharp where an upscaled small original is blurred)."""
    resized = covering_size(original_size, target_size)
    top, left = crop_top_left
    if not (0 <= top <= resized[0] - target_size[0] and 0 <= left <= resized[1] - target_size[1]):
        raise ValueError(f"crop_top_left {crop_top_left} does not fit a {target_size} crop into the resized "
                         f"{resized} image; top must be in [0, {resized[0] - target_size[0]}] and left in "
                         f"[0, {resized[1] - target_size[1]}]")
    photo = Image.fromarray(render(scene, original_size).image)
    if photo.size != (resized[1], resized[0]):
        photo = photo.resize((resized[1], resized[0]), Image.Resampling.BICUBIC)
    window = (slice(top, top + target_size[0]), slice(left, left + target_size[1]))
    return np.asarray(photo)[window], render(scene, resized).instances[window]


# ------------------------------------------------------------------------------------------------ dataset
@dataclass(frozen=True)
class ShapesConfig:
    """How the Shapes dataset draws its items."""
    size: tuple[int, int] = (64, 64)            # (height, width) of every item
    num_images: int | None = None               # items in the split; None: SPLIT_SIZES (drawn on demand)
    max_shapes: int = 3                         # shapes per scene: 1 ... max_shapes
    original_scale: tuple[float, float] | None = None  # e.g. (0.25, 2.0): the original's shorter side is drawn
                                                # from this range times the target's; None renders at `size`
    max_aspect_change: float = 1.5              # with original_scale: originals are up to this much wider/taller
    random_crop: bool = True                    # with original_scale: random crop, else centre crop
    seed: int = 0                               # with the split and the index, fixes every item


SPLIT_SEEDS = {"train": 0, "val": 1}
SPLIT_SIZES = {"train": 50_000, "val": 5_000}


class ShapesDataset(Dataset):
    """Items ``{"image": float [3, h, w] in [-1, 1], "caption", "label", "boxes": float [n, 4],
    "box_labels": int64 [n] (kind index), "box_instances": int64 [n] (which instance each box frames),
    "segmentation": int64 [h, w] (0 background, 1 + kind index), "instances": int64 [h, w] (0 background,
    i + 1 for the scene's shape i), "original_size", "crop_top_left", "target_size"}``.
    Item ``i`` is the same on every call and machine."""

    def __init__(self, split: str = "train", config: ShapesConfig = ShapesConfig()):
        if split not in SPLIT_SEEDS:
            raise unknown_name_error("shapes split", split, SPLIT_SEEDS)
        self.split, self.config = split, config

    def __len__(self) -> int:
        return self.config.num_images if self.config.num_images is not None else SPLIT_SIZES[self.split]

    def scene(self, index: int) -> Scene:
        return sample_scene(self._rng(index), self.config.max_shapes)

    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, SPLIT_SEEDS[self.split], index, stream])

    def view(self, index: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The ``original_size`` and ``crop_top_left`` of item ``index``."""
        target, config = self.config.size, self.config
        if config.original_scale is None:
            return target, (0, 0)
        rng = self._rng(index, stream=1)
        short = rng.uniform(*config.original_scale) * min(target)
        aspect = rng.uniform(1, config.max_aspect_change) ** rng.choice([-1, 1])  # width / height
        original = (max(1, round(short * max(1, 1 / aspect))), max(1, round(short * max(1, aspect))))
        return original, crop_corner(original, target, rng if config.random_crop else None)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} shapes items")
        original, crop = self.view(index)
        return scene_item(self.scene(index), original, self.config.size, crop)


def scene_item(scene: Scene, original: tuple[int, int], target: tuple[int, int], crop: tuple[int, int]) -> dict:
    """One dataset item: ``scene`` photographed at ``original`` size, resized to cover ``target`` and cropped at
    ``crop`` (``render_view``), with its caption, label, boxes, maps and size/crop metadata."""
    image, instances = render_view(scene, original, target, crop)
    resized = covering_size(original, target)
    boxes, box_labels, box_instances = [], [], []
    for instance, shape in enumerate(scene.shapes, start=1):
        top, left, bottom, right = box(shape, resized)
        top, bottom = np.clip([top - crop[0], bottom - crop[0]], 0, target[0]) / target[0]
        left, right = np.clip([left - crop[1], right - crop[1]], 0, target[1]) / target[1]
        if bottom > top and right > left:  # shapes cropped away entirely have no box
            boxes.append((top, left, bottom, right))
            box_labels.append(KINDS.index(shape.kind))
            box_instances.append(instance)
    kind_of_instance = torch.tensor([0] + [1 + KINDS.index(s.kind) for s in scene.shapes])
    instances = torch.from_numpy(instances)
    return {
        "image": torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 127.5 - 1,
        "caption": caption(scene), "label": label(scene),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "box_labels": torch.tensor(box_labels, dtype=torch.int64),
        "box_instances": torch.tensor(box_instances, dtype=torch.int64),
        "segmentation": kind_of_instance[instances], "instances": instances,
        "original_size": original, "crop_top_left": crop, "target_size": target,
    }


def info() -> dict:
    return {"num_images": sum(SPLIT_SIZES.values()), "splits": dict(SPLIT_SIZES), "num_classes": len(KINDS),
            "available": True, "how_to_get": "procedural: generated on demand, nothing to fetch"}
